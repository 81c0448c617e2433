package tracing

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/queue"
)

// countingSampler counts the sampling decisions the SDK asks of it: one per span started.
type countingSampler struct {
	sdktrace.Sampler
	asked atomic.Int64
}

func (s *countingSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.asked.Add(1)
	return s.Sampler.ShouldSample(p)
}

// A message its root's sampler dropped costs one span start, the root's: the blocks it
// reaches start none (a ParentBased sampler would drop every one of them), so a 1% sampler
// makes the other 99% of messages cheap.
func TestNoSpanStartsUnderAnUnsampledParent(t *testing.T) {
	sampler := &countingSampler{Sampler: sdktrace.ParentBased(sdktrace.NeverSample())}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	o := NewObserver(WithTracerProvider(tp))
	t.Cleanup(func() { require.NoError(t, o.Close()) })

	ctx, root := tp.Tracer("test").Start(context.Background(), "message")
	require.False(t, root.SpanContext().IsSampled())
	require.Equal(t, int64(1), sampler.asked.Load())

	outer := queue.NewSerial("outer", queue.WithObserver(o))
	inner := queue.NewSerial("inner", queue.WithObserver(o))
	done := make(chan struct{})
	outer.AsyncContext(ctx, func(context.Context) {
		inner.Sync(func() {})
		inner.Async(func() { close(done) })
	})
	testutil.Recv(t, done, "the blocks")
	require.Equal(t, int64(1), sampler.asked.Load(), "spans were started under an unsampled parent")

	// A sampled message still gets its blocks' spans.
	sampled := &countingSampler{Sampler: sdktrace.ParentBased(sdktrace.AlwaysSample())}
	tp2 := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampled))
	t.Cleanup(func() { require.NoError(t, tp2.Shutdown(context.Background())) })
	o2 := NewObserver(WithTracerProvider(tp2))
	t.Cleanup(func() { require.NoError(t, o2.Close()) })
	ctx2, _ := tp2.Tracer("test").Start(context.Background(), "message")
	q2 := queue.NewSerial("q2", queue.WithObserver(o2))
	q2.SyncContext(ctx2, func(context.Context) {})
	require.Equal(t, int64(2), sampled.asked.Load(), "the sampled message's block has its span")
}
