package tracing

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/dispatchkit/dispatchkit/queue"
)

// durationBuckets are the histogram boundaries, in seconds: fine enough for in-process work
// (10 µs) and wide enough for a stuck block (10 s).
var durationBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// connBuckets are for how long a WebSocket connection lived, in seconds.
var connBuckets = []float64{0.01, 0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}

// instruments are the Observer's metrics. Names follow the OTel rules: our own prefix,
// dots between namespaces, units in UCUM (s, By, {block}), no _total suffix.
type instruments struct {
	wait     metric.Float64Histogram // dispatch.queue.wait.duration
	run      metric.Float64Histogram // dispatch.queue.run.duration
	rejected metric.Int64Counter     // dispatch.queue.rejected
	size     metric.Int64ObservableUpDownCounter

	conns      metric.Int64UpDownCounter // dispatch.ws.connection.count
	connDur    metric.Float64Histogram   // dispatch.ws.connection.duration
	messages   metric.Int64Counter       // dispatch.ws.messages
	bytes      metric.Int64Counter       // dispatch.ws.io
	dropped    metric.Int64Counter       // dispatch.ws.dropped
	closed     metric.Int64Counter       // dispatch.ws.closed
	refused    metric.Int64Counter       // dispatch.ws.refused
	brokerErrs metric.Int64Counter       // dispatch.ws.broker.errors
}

// newInstruments makes the instruments; an error (a provider that refuses one) goes to
// handle and leaves a no-op instrument in its place.
func newInstruments(m metric.Meter, handle func(error)) instruments {
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string, buckets []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(buckets...))
		errs = append(errs, err)
		return h
	}
	in := instruments{
		wait:     histogram("dispatch.queue.wait.duration", "Time a block waited on its queue, from accepted to started.", durationBuckets),
		run:      histogram("dispatch.queue.run.duration", "Time a block ran.", durationBuckets),
		rejected: counter("dispatch.queue.rejected", "{block}", "Blocks TryAsync refused, by error.type (full, closed)."),
		connDur:  histogram("dispatch.ws.connection.duration", "How long WebSocket connections lived, by close reason.", connBuckets),
		messages: counter("dispatch.ws.messages", "{message}", "WebSocket messages received and written, by network.io.direction."),
		bytes:    counter("dispatch.ws.io", "By", "WebSocket payload bytes received and written, by network.io.direction."),
		dropped:  counter("dispatch.ws.dropped", "{message}", "Outbound WebSocket messages not written, by reason."),
		closed:   counter("dispatch.ws.closed", "{connection}", "WebSocket connections closed, by reason."),
		refused:  counter("dispatch.ws.refused", "{request}", "Upgrade requests refused before the handshake, by reason."),
		brokerErrs: counter("dispatch.ws.broker.errors", "{error}",
			"Failed Broker operations, by dispatch.ws.broker.operation (publish, subscribe, unsubscribe)."),
	}
	var err error
	in.conns, err = m.Int64UpDownCounter("dispatch.ws.connection.count", metric.WithUnit("{connection}"),
		metric.WithDescription("WebSocket connections open now."))
	if err = errors.Join(append(errs, err)...); err != nil {
		handle(err)
	}
	return in
}

// observeQueues registers the one callback that reports dispatch.queue.size: the blocks
// waiting in every live queue the Observer was given, summed by queue label.
func (in *instruments) observeQueues(m metric.Meter, live *liveSet, labels *labelCache, handle func(error)) metric.Registration {
	size, err := m.Int64ObservableUpDownCounter("dispatch.queue.size", metric.WithUnit("{block}"),
		metric.WithDescription("Blocks accepted and not yet started, summed over the live queues of a label."))
	if err != nil {
		handle(err)
		return nil
	}
	in.size = size
	reg, err := m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		sums := map[*labelAttrs]int64{}
		live.each(func(q *queue.Queue) {
			sums[labels.get(q)] += int64(q.Stats().Pending)
		})
		for a, n := range sums {
			ob.ObserveInt64(size, n, a.size...)
		}
		return nil
	}, size)
	if err != nil {
		handle(err)
		return nil
	}
	return reg
}

// A liveSet holds the queues an observer was given, weakly: a queue that is dropped without
// Close disappears from it when the garbage collector takes it, so a server that makes a
// queue per connection does not leak through its observer.
type liveSet struct {
	mu      sync.Mutex
	m       map[weak.Pointer[queue.Queue]]struct{}
	entries sweeper
}

func (s *liveSet) add(q *queue.Queue) {
	p := weak.Make(q)
	s.mu.Lock()
	if s.m == nil {
		s.m = map[weak.Pointer[queue.Queue]]struct{}{}
	}
	s.m[p] = struct{}{}
	s.mu.Unlock()
	s.entries.added(func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		for p := range s.m {
			if p.Value() == nil {
				delete(s.m, p)
			}
		}
		return len(s.m)
	})
}

// A sweeper bounds a weak set's dead entries (queues collected without Close) when nobody
// reads the set (no metric reader, an inspector nobody looks at): after as many additions
// as the set had live entries at its last sweep (at least sweepEvery), the next addition
// sweeps it. Each sweep costs what the additions since the last one did, and the set holds
// at most about twice its live queues.
type sweeper struct {
	count    atomic.Int64
	next     atomic.Int64
	sweeping atomic.Bool
}

// sweepEvery is the fewest additions between two sweeps.
const sweepEvery = 1024

// added counts one addition and runs sweep (which returns the live entries left) when due.
func (w *sweeper) added(sweep func() (live int)) {
	n := w.count.Add(1)
	if n < max(w.next.Load(), sweepEvery) || !w.sweeping.CompareAndSwap(false, true) {
		return
	}
	live := sweep()
	w.next.Store(w.count.Load() + max(int64(live), sweepEvery))
	w.sweeping.Store(false)
}

func (s *liveSet) remove(q *queue.Queue) {
	p := weak.Make(q)
	s.mu.Lock()
	delete(s.m, p)
	s.mu.Unlock()
}

// each calls f for every live queue, outside the set's lock, and forgets collected ones.
func (s *liveSet) each(f func(*queue.Queue)) {
	s.mu.Lock()
	qs := make([]*queue.Queue, 0, len(s.m))
	for p := range s.m {
		if q := p.Value(); q != nil {
			qs = append(qs, q)
		} else {
			delete(s.m, p)
		}
	}
	s.mu.Unlock()
	for _, q := range qs {
		f(q)
	}
}

// len reports how many queues the set holds (collected ones included until the next each).
func (s *liveSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Fixed attribute sets of the server metrics.
var (
	dirReceive  = attribute.String("network.io.direction", "receive")
	dirTransmit = attribute.String("network.io.direction", "transmit")
	optReceive  = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(dirReceive))}
	optTransmit = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(dirTransmit))}
)

// reasonOpts caches the attribute option of each close, drop or refusal reason (a short,
// fixed list of strings).
var reasonOpts sync.Map // string -> *reasonAttrs

type reasonAttrs struct {
	add    []metric.AddOption
	record []metric.RecordOption
	opAdd  []metric.AddOption // the same string as a broker operation
}

func reasonOf(why string) *reasonAttrs {
	if v, ok := reasonOpts.Load(why); ok {
		return v.(*reasonAttrs)
	}
	set := attribute.NewSet(attribute.String(keyReason, why))
	v, _ := reasonOpts.LoadOrStore(why, &reasonAttrs{
		add:    []metric.AddOption{metric.WithAttributeSet(set)},
		record: []metric.RecordOption{metric.WithAttributeSet(set)},
		opAdd:  []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(keyBrokerOp, why)))},
	})
	return v.(*reasonAttrs)
}

// closeOf returns the attribute options of a close reason: dispatch.ws.close.cause, and
// error.type unless it is a normal departure.
func closeOf(why string) *reasonAttrs {
	if v, ok := closeOpts.Load(why); ok {
		return v.(*reasonAttrs)
	}
	kvs := []attribute.KeyValue{attribute.String(keyCloseCause, why)}
	if !normalDeparture(why) {
		kvs = append(kvs, attribute.String(keyErrorType, why))
	}
	set := attribute.NewSet(kvs...)
	v, _ := closeOpts.LoadOrStore(why, &reasonAttrs{
		add:    []metric.AddOption{metric.WithAttributeSet(set)},
		record: []metric.RecordOption{metric.WithAttributeSet(set)},
	})
	return v.(*reasonAttrs)
}

var closeOpts sync.Map // string -> *reasonAttrs

const (
	keyReason   = keyErrorType // drops and refusals: the same vocabulary as the spans' error.type
	keyBrokerOp = "dispatch.ws.broker.operation"
)
