package tracing

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/dispatchkit/dispatchkit/queue"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait for an event in these tests.
const wait = 10 * time.Second

// rig is an Observer over an SDK that records every span in memory and a manual metric reader.
type rig struct {
	*Observer
	spans  *recorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newRig(t *testing.T, opts ...Option) *rig {
	t.Helper()
	sr := newRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	o := NewObserver(append([]Option{WithTracerProvider(tp), WithMeterProvider(mp)}, opts...)...)
	t.Cleanup(func() {
		require.NoError(t, o.Close())
		require.NoError(t, tp.Shutdown(context.Background()))
		require.NoError(t, mp.Shutdown(context.Background()))
	})
	return &rig{Observer: o, spans: sr, reader: reader, tp: tp, mp: mp}
}

// ended returns the ended spans named name.
func (r *rig) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// waitSpans waits until n spans named name have ended.
func (r *rig) waitSpans(t *testing.T, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	timeout := time.After(wait)
	for {
		changed := r.spans.changed()
		if got := r.ended(name); len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d %q spans ended within %v, want %d", len(r.ended(name)), name, wait, n)
		}
	}
}

// recorder is a span processor that keeps ended spans and tells waiters when one ends.
type recorder struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
	ch    chan struct{} // closed and replaced at every End
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{})} }

func (r *recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	r.spans = append(r.spans, s)
	close(r.ch)
	r.ch = make(chan struct{})
	r.mu.Unlock()
}
func (r *recorder) Shutdown(context.Context) error   { return nil }
func (r *recorder) ForceFlush(context.Context) error { return nil }

// Ended returns the spans ended so far.
func (r *recorder) Ended() []sdktrace.ReadOnlySpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdktrace.ReadOnlySpan(nil), r.spans...)
}

// changed returns a channel closed at the next End.
func (r *recorder) changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ch
}

// metrics collects the current metrics by name.
func (r *rig) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, ScopeName, sm.Scope.Name)
		require.Equal(t, Version, sm.Scope.Version)
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// attrs turns a span's attributes into a map.
func attrs(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// mpForTest is the rig's meter provider, for a second Observer reporting to the same reader.
func (r *rig) mpForTest() *sdkmetric.MeterProvider { return r.mp }

// tracerForTest is a tracer of the rig's provider, for the tests' own parent spans.
func (r *rig) tracerForTest() trace.Tracer {
	return r.tp.Tracer("test")
}

// makeAndDrop makes a queue observed by o and drops it without Close.
//
//go:noinline
func makeAndDrop(o *Observer) {
	q := queue.NewSerial("dropped", queue.WithObserver(o))
	q.Sync(func() {})
}

// collectGarbage runs the collector twice, so weak pointers to unreachable queues clear.
func collectGarbage() {
	runtime.GC()
	runtime.GC()
}
