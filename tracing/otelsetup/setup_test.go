package otelsetup

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/tracing"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// receiver is an in-process OTLP/HTTP receiver that decodes what it is sent.
type receiver struct {
	mu      sync.Mutex
	spans   []string // span names
	full    []*tracepb.Span
	metrics []string // metric names
	service []string // service.name of each resource seen
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var reply proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		var req colltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range req.ResourceSpans {
			rc.service = append(rc.service, serviceName(rs.GetResource().GetAttributes()))
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					rc.spans = append(rc.spans, s.Name)
					rc.full = append(rc.full, s)
				}
			}
		}
		reply = &colltrace.ExportTraceServiceResponse{}
	case "/v1/metrics":
		var req collmetrics.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rm := range req.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					rc.metrics = append(rc.metrics, m.Name)
				}
			}
		}
		reply = &collmetrics.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, r)
		return
	}
	out, _ := proto.Marshal(reply)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func serviceName(kvs []*commonpb.KeyValue) string {
	for _, kv := range kvs {
		if kv.Key == "service.name" {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// restoreGlobals puts no-op global providers back after a test that ran Setup.
func restoreGlobals(t *testing.T) {
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
	})
}

// Setup with OTEL_*_EXPORTER=otlp sends spans and metrics over real OTLP/HTTP; an Observer
// on the globals it set produces them.
func TestSetupExportsOTLP(t *testing.T) {
	rc := &receiver{}
	ts := httptest.NewServer(rc)
	defer ts.Close()
	restoreGlobals(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ts.URL)
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")

	ctx := context.Background()
	shutdown, err := Setup(ctx, "tracing-test")
	require.NoError(t, err)
	obs := tracing.NewObserver()
	q := queue.NewSerial("exported", queue.WithObserver(obs))
	for range 3 {
		q.Sync(func() {})
	}
	require.NoError(t, q.Close(ctx))
	require.NoError(t, obs.Close())
	require.NoError(t, shutdown(ctx)) // flushes both signals

	rc.mu.Lock()
	defer rc.mu.Unlock()
	require.Equal(t, []string{"process exported", "process exported", "process exported"}, rc.spans)
	require.Contains(t, rc.service, "tracing-test")
	require.Contains(t, rc.metrics, "dispatch.queue.run.duration")
	require.Contains(t, rc.metrics, "dispatch.queue.wait.duration")
}

// Unset or none exporters install nothing; OTEL_SDK_DISABLED installs nothing; an unknown
// exporter is an error.
func TestSetupFromEnvironment(t *testing.T) {
	restoreGlobals(t)
	ctx := context.Background()
	for _, env := range [][2]string{{"", ""}, {"none", "none"}} {
		otel.SetTracerProvider(sdktrace.NewTracerProvider())
		t.Setenv("OTEL_TRACES_EXPORTER", env[0])
		t.Setenv("OTEL_METRICS_EXPORTER", env[1])
		shutdown, err := Setup(ctx, "x")
		require.NoError(t, err)
		require.IsType(t, tracenoop.TracerProvider{}, otel.GetTracerProvider())
		require.IsType(t, metricnoop.MeterProvider{}, otel.GetMeterProvider())
		require.True(t, tracing.NewObserver().Inert(), "an Observer over the no-op providers is inert")
		require.NoError(t, shutdown(ctx))
	}

	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	before := sdktrace.NewTracerProvider()
	otel.SetTracerProvider(before)
	shutdown, err := Setup(ctx, "x")
	require.NoError(t, err)
	require.Same(t, before, otel.GetTracerProvider(), "disabled: nothing installed")
	require.NoError(t, shutdown(ctx))

	t.Setenv("OTEL_SDK_DISABLED", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "carrier-pigeon")
	_, err = Setup(ctx, "x")
	require.ErrorContains(t, err, "carrier-pigeon")
}

// Over real OTLP/HTTP, one echoed message is one trace: its receive span is a root linked to
// the connection's handshake span, and the send it caused is its child in the same trace.
func TestMessageTraceOverOTLP(t *testing.T) {
	rc := &receiver{}
	ts := httptest.NewServer(rc)
	defer ts.Close()
	restoreGlobals(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ts.URL)
	ctx := context.Background()
	shutdown, err := Setup(ctx, "echo-test")
	require.NoError(t, err)
	obs := tracing.NewObserver()
	srv := wsserver.New(wsserver.HandlerFuncs{
		Message: func(c *wsserver.Conn, m wsserver.Message) { _ = c.Send(m) },
	}, wsserver.Options{Observer: obs, QueueObserver: obs})
	hs := httptest.NewServer(srv)
	c, _, err := websocket.Dial(ctx, "ws"+hs.URL[len("http"):], nil)
	require.NoError(t, err)
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("hi")))
	_, got, err := c.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "hi", string(got))
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	require.NoError(t, srv.Shutdown(ctx))
	hs.Close()
	require.NoError(t, obs.Close())
	require.NoError(t, shutdown(ctx)) // flushes every ended span

	rc.mu.Lock()
	defer rc.mu.Unlock()
	byName := map[string]*tracepb.Span{}
	for _, s := range rc.full {
		byName[s.Name] = s
	}
	hand, recv, send := byName["ws.handshake"], byName["receive ws.conn"], byName["send ws.conn"]
	require.NotNil(t, hand)
	require.NotNil(t, recv)
	require.NotNil(t, send)
	require.Empty(t, recv.ParentSpanId, "the message's trace starts at its receive span")
	require.NotEqual(t, hand.TraceId, recv.TraceId)
	require.Len(t, recv.Links, 1)
	require.Equal(t, hand.SpanId, recv.Links[0].SpanId, "linked to the connection's span")
	require.Equal(t, recv.TraceId, send.TraceId)
	require.Equal(t, recv.SpanId, send.ParentSpanId)
	require.NotNil(t, byName["ws.close"], "the close is traced too")
}
