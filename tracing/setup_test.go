package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"

	"github.com/dispatchkit/dispatchkit/internal/setupreg"
	"github.com/dispatchkit/dispatchkit/internal/testutil"
	_ "github.com/dispatchkit/dispatchkit/tracing/otelsetup" // links Setup, as a program's main does
)

// restoreGlobals puts the global providers and propagator back after a test that runs Setup.
func restoreGlobals(t *testing.T) {
	tp, mp, prop := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		if otel.GetTracerProvider() != tp {
			otel.SetTracerProvider(tp)
		}
		if otel.GetMeterProvider() != mp {
			otel.SetMeterProvider(mp)
		}
		if otel.GetTextMapPropagator() != prop {
			otel.SetTextMapPropagator(prop)
		}
	})
}

func TestSetupIsOtelsetupsWhenTheProgramLinksIt(t *testing.T) {
	restoreGlobals(t)
	got := make(chan string, 8)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Path
	}))
	t.Cleanup(sink.Close)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.URL)
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	shutdown, err := Setup(context.Background(), "setup-test")
	require.NoError(t, err)
	// The OTLP exporter installs an SDK provider: a span started now is recording.
	_, span := otel.Tracer("setup-test").Start(context.Background(), "probe")
	require.True(t, span.IsRecording(), "Setup installed no SDK tracer provider")
	span.End()
	require.NoError(t, shutdown(context.Background()))
	require.Equal(t, "/v1/traces", testutil.Recv(t, got, "the exported spans"))
}

func TestSetupWithoutOtelsetupSaysWhatToImport(t *testing.T) {
	restoreGlobals(t)
	saved := setupreg.Func
	setupreg.Func = nil
	t.Cleanup(func() { setupreg.Func = saved })
	before := otel.GetTracerProvider()
	shutdown, err := Setup(context.Background(), "setup-test")
	require.ErrorIs(t, err, ErrNoSetup)
	require.Contains(t, err.Error(), "tracing/otelsetup")
	require.Same(t, before, otel.GetTracerProvider(), "Setup installed something without otelsetup")
	require.NoError(t, shutdown(context.Background()))
}
