package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// An Async block's span is a CONSUMER child of the span that was current at the enqueue,
// and spans the block starts nest under it.
func TestAsyncSpanIsChildOfEnqueuer(t *testing.T) {
	r := newRig(t)
	q := queue.NewSerial("db", queue.WithObserver(r))
	defer q.Close(context.Background())
	tracer := r.tracerForTest()

	ctx, parent := tracer.Start(context.Background(), "request")
	done := make(chan struct{})
	q.AsyncContext(ctx, func(ctx context.Context) {
		_, inner := tracer.Start(ctx, "query")
		inner.End()
		// Async from inside a block carries the block's span on.
		q.Async(func() { close(done) })
	})
	testutil.Recv(t, done, "nested block")
	parent.End()

	spans := r.waitSpans(t, "process db", 2)
	first, second := spans[0], spans[1]
	require.Equal(t, trace.SpanKindConsumer, first.SpanKind())
	require.Equal(t, parent.SpanContext().SpanID(), first.Parent().SpanID())
	require.Equal(t, parent.SpanContext().TraceID(), first.SpanContext().TraceID())
	require.Equal(t, first.SpanContext().SpanID(), second.Parent().SpanID(), "Async in a block: child of the block's span")
	inner := r.waitSpans(t, "query", 1)[0]
	require.Equal(t, first.SpanContext().SpanID(), inner.Parent().SpanID())

	a := attrs(first.Attributes())
	require.Equal(t, "dispatchkit", a["messaging.system"])
	require.Equal(t, "process", a["messaging.operation.name"])
	require.Equal(t, "process", a["messaging.operation.type"])
	require.Equal(t, "db", a["messaging.destination.name"])
	require.Equal(t, "serial", a["dispatch.queue.kind"])
	require.Equal(t, queue.Default.String(), a["dispatch.queue.qos"])
	require.Equal(t, "async", a["dispatch.block.kind"])
	require.Contains(t, a, "dispatch.block.wait")
	require.GreaterOrEqual(t, a["dispatch.block.wait"].(float64), 0.0)
	require.Equal(t, codes.Unset, first.Status().Code)
}

// The attributes known at start reach the sampler.
func TestAttributesReachTheSampler(t *testing.T) {
	r := newRig(t)
	q := queue.NewConcurrent("pool", queue.WithObserver(r), queue.WithQoS(queue.UserInitiated))
	defer q.Close(context.Background())
	q.Sync(func() {})
	s := r.waitSpans(t, "process pool", 1)[0]
	a := attrs(s.Attributes())
	require.Equal(t, "concurrent", a["dispatch.queue.kind"])
	require.Equal(t, queue.UserInitiated.String(), a["dispatch.queue.qos"])
	require.Equal(t, "sync", a["dispatch.block.kind"])
}

// Sync runs on the caller's goroutine under a span that is the caller's child; a barrier says so.
func TestSyncAndBarrierSpans(t *testing.T) {
	r := newRig(t)
	q := queue.NewConcurrent("cache", queue.WithObserver(r))
	defer q.Close(context.Background())
	ctx, parent := r.tracerForTest().Start(context.Background(), "caller")
	var inside trace.SpanContext
	require.NoError(t, q.SyncContext(ctx, func(ctx context.Context) {
		inside = trace.SpanContextFromContext(ctx)
		require.Equal(t, inside, trace.SpanContextFromContext(queue.CurrentContext()))
	}))
	parent.End()
	done := make(chan struct{})
	q.BarrierAsync(func() { close(done) })
	testutil.Recv(t, done, "barrier")

	spans := r.waitSpans(t, "process cache", 2)
	require.Equal(t, "sync", attrs(spans[0].Attributes())["dispatch.block.kind"])
	require.Equal(t, parent.SpanContext().SpanID(), spans[0].Parent().SpanID())
	require.Equal(t, inside.SpanID(), spans[0].SpanContext().SpanID(), "the block saw its own span")
	require.Equal(t, "barrier", attrs(spans[1].Attributes())["dispatch.block.kind"])
	require.False(t, spans[1].Parent().IsValid(), "a barrier submitted outside any span is a root")
}

// A queue that targets an observed queue inherits its observer: its blocks get spans named
// after their own queue, and the drain on the target adds none.
func TestTargetChainSpans(t *testing.T) {
	r := newRig(t)
	root := queue.NewConcurrent("handlers", queue.WithObserver(r))
	conn := queue.NewSerial("ws.conn", queue.WithTarget(root))
	defer root.Close(context.Background())
	defer conn.Close(context.Background())
	ctx, parent := r.tracerForTest().Start(context.Background(), "read")
	done := make(chan struct{})
	conn.AsyncContext(ctx, func(context.Context) { close(done) })
	testutil.Recv(t, done, "block on the child queue")
	parent.End()
	s := r.waitSpans(t, "process ws.conn", 1)[0]
	require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID())
	require.Equal(t, "ws.conn", attrs(s.Attributes())["messaging.destination.name"])
	require.Empty(t, r.ended("process handlers"), "draining a child is not a block of the target")
}

// A panic sets the span's status to Error with error.type, and no exception event.
func TestPanicSpan(t *testing.T) {
	r := newRig(t)
	caught := make(chan any, 1)
	q := queue.NewSerial("jobs", queue.WithObserver(r), queue.WithPanicHandler(func(v any, _ []byte) { caught <- v }))
	defer q.Close(context.Background())
	q.Async(func() { panic(errors.New("boom")) })
	require.EqualError(t, testutil.Recv(t, caught, "the panic").(error), "boom")
	s := r.waitSpans(t, "process jobs", 1)[0]
	require.Equal(t, codes.Error, s.Status().Code)
	require.Contains(t, s.Status().Description, "boom")
	require.Equal(t, "*errors.errorString", attrs(s.Attributes())["error.type"])
	require.Empty(t, s.Events(), "status and error.type, not RecordError")
}

// WithNewRoots starts each block's trace afresh, linked to the enqueuer's span.
func TestNewRootsLink(t *testing.T) {
	r := newRig(t, WithNewRoots())
	q := queue.NewSerial("mail", queue.WithObserver(r))
	defer q.Close(context.Background())
	ctx, parent := r.tracerForTest().Start(context.Background(), "request")
	done := make(chan struct{})
	q.AsyncContext(ctx, func(context.Context) { close(done) })
	testutil.Recv(t, done, "block")
	parent.End()
	s := r.waitSpans(t, "process mail", 1)[0]
	require.False(t, s.Parent().IsValid())
	require.NotEqual(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
	require.Len(t, s.Links(), 1)
	require.Equal(t, parent.SpanContext().SpanID(), s.Links()[0].SpanContext.SpanID())
}

// WithProducerSpans adds a PRODUCER span per enqueue, parent of the process span.
func TestProducerSpans(t *testing.T) {
	r := newRig(t, WithProducerSpans())
	q := queue.NewSerial("mail", queue.WithObserver(r))
	defer q.Close(context.Background())
	done := make(chan struct{})
	q.Async(func() { close(done) })
	testutil.Recv(t, done, "block")
	send := r.waitSpans(t, "send mail", 1)[0]
	proc := r.waitSpans(t, "process mail", 1)[0]
	require.Equal(t, trace.SpanKindProducer, send.SpanKind())
	require.Equal(t, "send", attrs(send.Attributes())["messaging.operation.type"])
	require.Equal(t, send.SpanContext().SpanID(), proc.Parent().SpanID())
}

// Metric values after a known workload: 5 blocks run, 2 refusals, 3 blocks waiting.
func TestQueueMetrics(t *testing.T) {
	r := newRig(t)
	q := queue.NewSerial("work", queue.WithObserver(r), queue.WithLimit(3))
	defer q.Close(context.Background())
	for range 5 {
		q.Sync(func() {})
	}
	q.Suspend()
	for range 3 {
		require.NoError(t, q.TryAsync(func() {}))
	}
	require.ErrorIs(t, q.TryAsync(func() {}), queue.ErrFull)
	require.ErrorIs(t, q.TryAsync(func() {}), queue.ErrFull)

	m := r.metrics(t)
	size := m["dispatch.queue.size"].(metricdata.Sum[int64])
	require.False(t, size.IsMonotonic)
	require.Len(t, size.DataPoints, 1)
	require.Equal(t, int64(3), size.DataPoints[0].Value)
	label, _ := size.DataPoints[0].Attributes.Value("dispatch.queue.label")
	require.Equal(t, "work", label.AsString())

	rej := m["dispatch.queue.rejected"].(metricdata.Sum[int64])
	require.Len(t, rej.DataPoints, 1)
	require.Equal(t, int64(2), rej.DataPoints[0].Value)
	why, _ := rej.DataPoints[0].Attributes.Value("error.type")
	require.Equal(t, "full", why.AsString())

	for _, name := range []string{"dispatch.queue.wait.duration", "dispatch.queue.run.duration"} {
		h := m[name].(metricdata.Histogram[float64])
		require.Len(t, h.DataPoints, 1, name)
		require.Equal(t, uint64(5), h.DataPoints[0].Count, name)
		require.Equal(t, durationBuckets, h.DataPoints[0].Bounds, name)
		kind, _ := h.DataPoints[0].Attributes.Value("dispatch.block.kind")
		require.Equal(t, "sync", kind.AsString())
	}

	q.Resume()
	q.Sync(func() {}) // the three queued blocks ran before it
	m = r.metrics(t)
	require.Equal(t, int64(0), m["dispatch.queue.size"].(metricdata.Sum[int64]).DataPoints[0].Value)
	var runs uint64
	for _, dp := range m["dispatch.queue.run.duration"].(metricdata.Histogram[float64]).DataPoints {
		runs += dp.Count
	}
	require.Equal(t, uint64(9), runs)
}

// A closed queue leaves the size metric; one dropped without Close leaves when collected,
// and after Close of the Observer its callback reports nothing more.
func TestQueueSizeForgetsQueues(t *testing.T) {
	r := newRig(t)
	a := queue.NewSerial("a", queue.WithObserver(r))
	require.Equal(t, 1, r.live.len())
	require.NoError(t, a.Close(context.Background()))
	require.Equal(t, 0, r.live.len())
	makeAndDrop(r.Observer)
	require.Equal(t, 1, r.live.len())
	require.Eventually(t, func() bool {
		collectGarbage()
		r.live.each(func(*queue.Queue) {})
		return r.live.len() == 0
	}, wait, 1e6, "a dropped queue leaves the live set")

	b := queue.NewSerial("b", queue.WithObserver(r))
	defer b.Close(context.Background())
	require.Len(t, r.metrics(t)["dispatch.queue.size"].(metricdata.Sum[int64]).DataPoints, 1)
	require.NoError(t, r.Close())
	_, ok := r.metrics(t)["dispatch.queue.size"]
	require.False(t, ok, "no callback after Close")
}

// Over no-op providers an Observer starts no span and allocates nothing per block.
func TestNoopProvidersAllocateNothing(t *testing.T) {
	o := NewObserver(WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(noop.NewMeterProvider()))
	defer o.Close()
	q := queue.NewSerial("q", queue.WithObserver(o))
	defer q.Close(context.Background())
	ctx := context.Background()
	info := queue.BlockInfo{Kind: queue.BlockAsync}
	allocs := testing.AllocsPerRun(1000, func() {
		c := o.Enqueued(q, ctx, queue.BlockAsync)
		c = o.Started(q, c, info)
		o.Finished(q, c, info)
	})
	require.Zero(t, allocs)
}

// With the metrics SDK and a never-sampling tracer, the per-block hooks still allocate
// nothing for metrics: attribute sets are precomputed.
func TestMetricsAllocateNothing(t *testing.T) {
	r := newRig(t)
	o := NewObserver(WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(r.mpForTest()))
	defer o.Close()
	q := queue.NewSerial("q", queue.WithObserver(o))
	defer q.Close(context.Background())
	ctx := context.Background()
	info := queue.BlockInfo{Kind: queue.BlockSync}
	o.Finished(q, ctx, info) // the first measurement makes the aggregator
	allocs := testing.AllocsPerRun(1000, func() {
		c := o.Enqueued(q, ctx, queue.BlockSync)
		c = o.Started(q, c, info)
		o.Finished(q, c, info)
	})
	require.Zero(t, allocs)
	h := r.metrics(t)["dispatch.queue.run.duration"].(metricdata.Histogram[float64])
	require.Equal(t, uint64(1002), h.DataPoints[0].Count, "every block was recorded")
}

// Over no-op providers and without an inspector an Observer is inert, so queues skip it;
// with an SDK provider or an inspector it is not.
func TestInertOverNoopProviders(t *testing.T) {
	noopTP, noopMP := tracenoop.NewTracerProvider(), noop.NewMeterProvider()
	o := NewObserver(WithTracerProvider(noopTP), WithMeterProvider(noopMP))
	require.True(t, o.Inert())
	r := newRig(t)
	require.False(t, r.Inert())
	require.False(t, NewObserver(WithTracerProvider(noopTP), WithMeterProvider(noopMP), WithInspector(NewInspector())).Inert())
	require.False(t, NewObserver(WithTracerProvider(noopTP), WithMeterProvider(r.mpForTest())).Inert())

	// A queue made with the inert Observer never reaches it: its live set stays empty.
	q := queue.NewSerial("off", queue.WithObserver(o))
	defer q.Close(context.Background())
	q.Sync(func() {})
	require.Zero(t, o.live.len())
}

// A nil *Observer is inert: queues and servers given one behave as with no observer, and
// calling its methods does nothing.
func TestNilObserverIsANoop(t *testing.T) {
	var o *Observer
	require.True(t, o.Inert())
	require.NoError(t, o.Close())
	q := queue.NewSerial("nil", queue.WithObserver(o))
	defer q.Close(context.Background())
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	testutil.Recv(t, ran, "block on a queue with a nil observer")
	q.Sync(func() {})
	srv := wsserver.New(wsserver.HandlerFuncs{}, wsserver.Options{Observer: o, QueueObserver: o})
	require.NoError(t, srv.Shutdown(context.Background()))

	ctx := context.Background()
	require.Equal(t, ctx, o.Enqueued(q, ctx, queue.BlockAsync))
	require.Equal(t, ctx, o.Started(q, ctx, queue.BlockInfo{}))
	o.Finished(q, ctx, queue.BlockInfo{})
	o.Rejected(q, queue.ErrFull)
	o.QueueCreated(q)
	o.QueueClosed(q)
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	require.Equal(t, ctx, o.Handshake(ctx, r))
	o.Refused(ctx, r, http.StatusForbidden, "forbidden")
	o.Opened(ctx, nil)
	o.Closed(ctx, nil, 0, wsserver.ReasonNormal, nil)
	require.Equal(t, ctx, o.Received(ctx, nil, wsserver.Message{}))
	o.Handled(ctx, nil, wsserver.Message{}, nil)
	require.Equal(t, ctx, o.Broadcast(ctx, "room", wsserver.Message{}, 1))
	require.Equal(t, ctx, o.Sent(ctx, nil, wsserver.Message{}))
	o.Written(ctx, nil, wsserver.Message{}, nil)
	o.Dropped(ctx, nil, wsserver.Message{}, wsserver.ReasonClosed)
	o.BrokerFailed("room", "publish", errors.New("down"))
}

// A Sync, a BarrierSync or a SyncContext whose ctx carries no span, made inside a traced
// block, stays in the block's trace.
func TestSyncInsideATracedBlockStaysInItsTrace(t *testing.T) {
	r := newRig(t)
	outer := queue.NewSerial("outer", queue.WithObserver(r))
	inner := queue.NewConcurrent("inner", queue.WithObserver(r))
	g := queue.NewGuarded(0, queue.WithLabel("guarded"), queue.WithObserver(r))
	defer outer.Close(context.Background())
	defer inner.Close(context.Background())
	done := make(chan struct{})
	outer.Async(func() {
		inner.Sync(func() {})
		inner.BarrierSync(func() {})
		require.NoError(t, inner.SyncContext(context.Background(), func(context.Context) {}))
		g.Sync(func(*int) {})
		close(done)
	})
	testutil.Recv(t, done, "the outer block")
	parent := r.waitSpans(t, "process outer", 1)[0]
	kids := append(r.waitSpans(t, "process inner", 3), r.waitSpans(t, "process guarded", 1)...)
	for _, s := range kids {
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID(), "%s in the block's trace", s.Name())
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "%s a child of the block", s.Name())
	}
}
