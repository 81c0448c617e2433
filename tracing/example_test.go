package tracing_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/tracing"
)

// An Observer makes a CONSUMER span per block, child of the span that submitted it.
func ExampleNewObserver() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	obs := tracing.NewObserver(tracing.WithTracerProvider(tp))
	defer obs.Close()

	q := queue.NewSerial("orders", queue.WithObserver(obs))
	ctx, req := tp.Tracer("app").Start(context.Background(), "POST /orders")
	_ = q.SyncContext(ctx, func(ctx context.Context) {
		_, span := tp.Tracer("app").Start(ctx, "save order") // nests under the block's span
		span.End()
	})
	req.End()
	_ = q.Close(context.Background())

	for _, s := range exp.GetSpans() {
		fmt.Println(s.Name, s.SpanKind)
	}
	// Output:
	// save order internal
	// process orders consumer
	// POST /orders internal
}

// An Inspector serves the figures of the queues it observes, live.
func ExampleInspector() {
	insp := tracing.NewInspector()
	q := queue.NewSerial("jobs", queue.WithObserver(insp))
	for range 3 {
		q.Async(func() {})
	}
	q.Sync(func() {})

	mux := http.NewServeMux()
	mux.Handle("/debug/dispatch", insp) // a page; ?format=json for the figures
	ts := httptest.NewServer(mux)
	defer ts.Close()

	s := insp.Snapshot(false)
	fmt.Println(s.Total, s.Queues[0].Label, s.Queues[0].Executed)
	_ = q.Close(context.Background())
	// Output: 1 jobs 3
}
