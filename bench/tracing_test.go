package bench

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/tracing"
)

// discard is a span exporter that drops what it is given, so the batch processor's cost is
// measured without an exporter's.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// providers are the four set-ups the tracing issue compares, per block.
func providers(b *testing.B) []struct {
	name string
	tp   trace.TracerProvider
	mp   metric.MeterProvider
} {
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	always := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = never.Shutdown(context.Background())
		_ = always.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	return []struct {
		name string
		tp   trace.TracerProvider
		mp   metric.MeterProvider
	}{
		{"NoopProviders", tracenoop.NewTracerProvider(), metricnoop.NewMeterProvider()},
		{"SDKNeverSample", never, mp},
		{"SDKAlwaysSample", always, mp},
	}
}

// BenchmarkTracingBlock is the per-block cost of a serial queue's Async + run of an empty
// block: without an observer, and with a tracing.Observer over each set of providers (the
// metrics' SDK records the wait and run histograms in the two SDK cases).
func BenchmarkTracingBlock(b *testing.B) {
	run := func(b *testing.B, opts ...queue.Option) {
		q := queue.NewSerial("bench", opts...)
		defer q.Close(context.Background())
		f := func() {}
		b.ReportAllocs()
		b.ResetTimer()
		// Not b.Loop: its timer stops at the loop's end, before the blocks have run.
		for range b.N {
			q.Async(f)
		}
		q.Sync(func() {})
	}
	eachObserver(b, run)
}

// BenchmarkTracingSync is the same comparison with Sync, which runs the block on the
// caller's goroutine: the hooks' own CPU cost, without the hand-off between goroutines.
func BenchmarkTracingSync(b *testing.B) {
	run := func(b *testing.B, opts ...queue.Option) {
		q := queue.NewSerial("bench", opts...)
		defer q.Close(context.Background())
		f := func() {}
		b.ReportAllocs()
		for b.Loop() {
			q.Sync(f)
		}
	}
	eachObserver(b, run)
}

// eachObserver runs run without an observer, then with a tracing.Observer over each set of
// providers.
func eachObserver(b *testing.B, run func(*testing.B, ...queue.Option)) {
	b.Run("NoObserver", func(b *testing.B) { run(b) })
	for _, p := range providers(b) {
		b.Run(p.name, func(b *testing.B) {
			o := tracing.NewObserver(tracing.WithTracerProvider(p.tp), tracing.WithMeterProvider(p.mp))
			defer o.Close()
			run(b, queue.WithObserver(o))
		})
	}
}

// BenchmarkTracingSpan is one bare span start and end, for reference.
func BenchmarkTracingSpan(b *testing.B) {
	for _, p := range providers(b) {
		b.Run(p.name, func(b *testing.B) {
			tr := p.tp.Tracer("bench")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_, s := tr.Start(ctx, "span")
				s.End()
			}
		})
	}
}
