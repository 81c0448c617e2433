package tracing

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// ScopeName is the instrumentation scope of the tracers and meters this package gets from
// its providers: the package's import path, as the OTel instrumentation rules ask.
const ScopeName = "github.com/dispatchkit/dispatchkit/tracing"

// Version is the version of this instrumentation, reported with ScopeName.
const Version = "0.1.0"

// An Observer turns what queues and the WebSocket server do into OpenTelemetry spans and
// metrics. One Observer serves both: pass it to queue.WithObserver and to
// wsserver.Options.Observer (and Options.QueueObserver). Its methods are the hooks those
// packages call; user code does not call them.
//
// An Observer is safe for concurrent use. Close it when done to unregister its metric
// callback.
type Observer struct {
	tracer  trace.Tracer
	spans   bool // false when the provider is a no-op one: no span is ever started
	inert   bool // no-op providers and no inspector: queues and the server skip the hooks
	linked  bool // WithNewRoots: process spans start a trace linked to the enqueuer's span
	produce bool // WithProducerSpans
	insp    *Inspector

	labels labelCache
	m      instruments
	live   liveSet
	reg    metric.Registration // the queue size callback
}

// Compile-time checks that an Observer fits both hooks.
var (
	_ queue.Observer          = (*Observer)(nil)
	_ wsserver.Observer       = (*Observer)(nil)
	_ wsserver.BrokerObserver = (*Observer)(nil)
	_ queue.Inert             = (*Observer)(nil)
)

// An Option configures an Observer.
type Option func(*config)

type config struct {
	tp      trace.TracerProvider
	mp      metric.MeterProvider
	linked  bool
	produce bool
	insp    *Inspector
}

// WithTracerProvider sets where spans go. Default: the global provider (otel.GetTracerProvider)
// at the time NewObserver is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets where metrics go. Default: the global provider
// (otel.GetMeterProvider) at the time NewObserver is called.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithNewRoots makes every block's process span the root of a new trace, linked to the span
// that was current where the block was submitted, instead of its child. (A WebSocket
// message's receive span is always a root, linked to its connection.) Use it for fire-and-forget work that outlives the request that queued
// it, so that the request's trace does not stretch to cover it.
func WithNewRoots() Option {
	return func(c *config) { c.linked = true }
}

// WithProducerSpans adds a PRODUCER span `send <queue label>` for every enqueue, parent of the
// block's process span. Off by default: an in-process enqueue is fast and the process span
// already carries the wait as an attribute.
func WithProducerSpans() Option {
	return func(c *config) { c.produce = true }
}

// WithInspector makes the Observer also feed the live Inspector in, so that one observer per
// queue does both.
func WithInspector(in *Inspector) Option {
	return func(c *config) { c.insp = in }
}

// NewObserver returns an Observer that reports to the given (or the global) providers.
func NewObserver(opts ...Option) *Observer {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	o := &Observer{
		tracer:  c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version)),
		linked:  c.linked,
		produce: c.produce,
		insp:    c.insp,
	}
	_, noop := c.tp.(tracenoop.TracerProvider)
	o.spans = !noop
	_, noMetrics := c.mp.(metricnoop.MeterProvider)
	o.inert = noop && noMetrics && c.insp == nil
	meter := c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	o.m = newInstruments(meter, otel.Handle)
	o.reg = o.m.observeQueues(meter, &o.live, &o.labels, otel.Handle)
	return o
}

// Inert reports whether the Observer has nothing to report to: both providers are the
// OpenTelemetry no-op ones and it feeds no Inspector. Queues and servers made with an inert
// Observer skip it altogether (queue.Inert), so instrumented code costs nothing while
// telemetry is off (otelsetup.Setup installs the no-op providers for a signal exported nowhere).
// A nil *Observer is inert, and every method of it does nothing.
func (o *Observer) Inert() bool { return o == nil || o.inert }

// Close unregisters the Observer's metric callback. Queues and connections that still use
// the Observer keep producing spans and the other metrics.
func (o *Observer) Close() error {
	if o == nil {
		return nil
	}
	if o.reg == nil {
		return nil
	}
	return o.reg.Unregister()
}

// A labelKey is what a queue's attributes depend on. Queue labels are meant to be roles
// ("ws.conn", "db"), not identities, so there are few of them.
type labelKey struct {
	label  string
	serial bool
	qos    queue.QoS
}

// labelAttrs is everything precomputed for one labelKey, so that the hot path allocates
// nothing for names and attributes.
type labelAttrs struct {
	name    string                     // span name: "process <label>"
	send    string                     // producer span name: "send <label>"
	start   [3][]trace.SpanStartOption // process span options by queue.BlockKind
	produce []trace.SpanStartOption    // producer span options
	label   string
	set     attribute.Set            // metric attributes: the label
	size    []metric.ObserveOption   // for the queue size callback
	kinds   [3][]metric.RecordOption // metric attributes: label and block kind
	full    []metric.AddOption       // rejected: label, error.type=full
	closed  []metric.AddOption       // rejected: label, error.type=closed
}

func (a *labelAttrs) rejectOpts(why string) []metric.AddOption {
	if why == "closed" {
		return a.closed
	}
	return a.full
}

// maxLabels bounds the cache; past it attributes are computed per block (and allocate).
const maxLabels = 4096

type labelCache struct {
	m  sync.Map // labelKey -> *labelAttrs
	n  int      // entries, under mu
	mu sync.Mutex
}

// get returns the attributes of q's label.
func (c *labelCache) get(q *queue.Queue) *labelAttrs {
	k := labelKey{q.Label(), q.IsSerial(), q.QoS()}
	if v, ok := c.m.Load(k); ok {
		return v.(*labelAttrs)
	}
	a := makeLabelAttrs(k)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= maxLabels {
		return a
	}
	v, loaded := c.m.LoadOrStore(k, a)
	if !loaded {
		c.n++
	}
	return v.(*labelAttrs)
}

func makeLabelAttrs(k labelKey) *labelAttrs {
	label := k.label
	if label == "" {
		label = "(unlabelled)"
	}
	kind := "concurrent"
	if k.serial {
		kind = "serial"
	}
	a := &labelAttrs{name: "process " + label, send: "send " + label, label: label}
	dest := attribute.String(keyDestination, label)
	for bk := queue.BlockAsync; bk <= queue.BlockSync; bk++ {
		a.start[bk] = []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attrSystem, attrOpProcess, attrOpTypeProcess, dest,
				attribute.String(keyQueueKind, kind),
				attribute.String(keyQoS, k.qos.String()),
				attribute.String(keyBlockKind, bk.String()),
			),
		}
		a.kinds[bk] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String(keyQueueLabel, label),
			attribute.String(keyBlockKind, bk.String()),
		))}
	}
	a.produce = []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrSystem, attrOpSend, attrOpTypeSend, dest),
	}
	a.set = attribute.NewSet(attribute.String(keyQueueLabel, label))
	a.size = []metric.ObserveOption{metric.WithAttributeSet(a.set)}
	for _, why := range []string{"full", "closed"} {
		opts := []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
			attribute.String(keyQueueLabel, label), attribute.String(keyErrorType, why)))}
		if why == "full" {
			a.full = opts
		} else {
			a.closed = opts
		}
	}
	return a
}

// Attribute keys and fixed attributes.
const (
	keyDestination = "messaging.destination.name"
	keyQueueLabel  = "dispatch.queue.label"
	keyQueueKey    = "dispatch.queue.key"
	keyQueueKind   = "dispatch.queue.kind"
	keyQoS         = "dispatch.queue.qos"
	keyBlockKind   = "dispatch.block.kind"
	keyWait        = "dispatch.block.wait"
	keySite        = "dispatch.block.site"
	keyErrorType   = "error.type"
)

var (
	attrSystem        = attribute.String("messaging.system", "dispatchkit")
	attrOpProcess     = attribute.String("messaging.operation.name", "process")
	attrOpTypeProcess = attribute.String("messaging.operation.type", "process")
	attrOpSend        = attribute.String("messaging.operation.name", "send")
	attrOpTypeSend    = attribute.String("messaging.operation.type", "send")
)

// kindIndex keeps a BlockKind inside the tables above.
func kindIndex(k queue.BlockKind) queue.BlockKind {
	if k > queue.BlockSync {
		return queue.BlockAsync
	}
	return k
}

// background is what a hook gets when the queue had no context to give.
func orBackground(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}
