// Package otelsetup configures the OpenTelemetry SDK from the standard OTEL_* environment,
// for programs. It lives apart from package tracing so that code which only wants the
// Observer links the OpenTelemetry API, not the SDK and every exporter (gRPC, Prometheus,
// OTLP) that autoexport brings: import it from main, never from a library.
//
//	shutdown, err := otelsetup.Setup(ctx, "chat")
//	...
//	defer shutdown(context.Background())
//	obs := tracing.NewObserver() // the global providers Setup installed
package otelsetup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/dispatchkit/dispatchkit/internal/setupreg"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Linking this package makes tracing.Setup work: tracing itself never imports it.
func init() { setupreg.Func = Setup }

// Setup configures the OpenTelemetry SDK from the standard OTEL_* environment and installs
// it as the global tracer and meter providers (and the W3C trace-context and baggage
// propagators). Programs call it once at start, libraries never: they take providers.
//
// The exporters come from go.opentelemetry.io/contrib/exporters/autoexport:
//
//	OTEL_TRACES_EXPORTER   otlp | console | none           (unset: none)
//	OTEL_METRICS_EXPORTER  otlp | prometheus | console | none (unset: none)
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf or grpc), ...
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (they win over serviceName)
//	OTEL_SDK_DISABLED=true                                (nothing is installed)
//
// Unlike the SDK's own default (otlp), an unset exporter variable means none, so a program
// that calls Setup stays quiet until it is asked to export. A signal whose exporter is none
// gets the API's no-op provider instead of an SDK, so an Observer made afterwards starts
// no span at all (and metric instruments report Enabled false).
//
// The returned shutdown flushes and stops what Setup started; call it before exiting. On an
// error Setup installs nothing.
func Setup(ctx context.Context, serviceName string) (shutdown func(context.Context) error, err error) {
	var stops []func(context.Context) error
	shutdown = func(ctx context.Context) error {
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			errs = append(errs, stops[i](ctx))
		}
		stops = nil
		return errors.Join(errs...)
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return shutdown, nil
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return shutdown, err
	}
	var tp trace.TracerProvider = tracenoop.NewTracerProvider()
	if exporting("OTEL_TRACES_EXPORTER") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return shutdown, fmt.Errorf("otelsetup: OTEL_TRACES_EXPORTER=%q: %w", os.Getenv("OTEL_TRACES_EXPORTER"), err)
		}
		sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		stops = append(stops, sdk.Shutdown)
		tp = sdk
	}
	var mp metric.MeterProvider = metricnoop.NewMeterProvider()
	if exporting("OTEL_METRICS_EXPORTER") {
		reader, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			err = fmt.Errorf("otelsetup: OTEL_METRICS_EXPORTER=%q: %w", os.Getenv("OTEL_METRICS_EXPORTER"), err)
			return shutdown, errors.Join(err, shutdown(ctx))
		}
		sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
		stops = append(stops, sdk.Shutdown)
		mp = sdk
	}
	// Installed only now that both exist: on an error above, nothing is.
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
	return shutdown, nil
}

// exporting reports whether the exporter variable asks for something other than none.
func exporting(env string) bool {
	v := strings.TrimSpace(os.Getenv(env))
	return v != "" && v != "none"
}
