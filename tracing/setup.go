package tracing

import (
	"context"
	"errors"

	"github.com/dispatchkit/dispatchkit/internal/setupreg"
)

// ErrNoSetup is returned by Setup in a program that does not link tracing/otelsetup.
var ErrNoSetup = errors.New(`tracing: Setup needs the SDK and exporters: import _ "github.com/dispatchkit/dispatchkit/tracing/otelsetup" in package main (or call otelsetup.Setup)`)

// Setup configures the OpenTelemetry SDK from the standard OTEL_* environment and installs
// it as the global providers, exactly as otelsetup.Setup does (see there for the variables
// it reads), and returns a shutdown func to call before exiting.
//
// The SDK and the exporters live in package tracing/otelsetup, so that importing the Observer
// links the OpenTelemetry API only. Setup is that package's Setup once the program links it:
// a main package imports it, directly or blank, as database/sql programs import a driver.
// Without it Setup installs nothing and returns ErrNoSetup, with a no-op shutdown.
func Setup(ctx context.Context, serviceName string) (shutdown func(context.Context) error, err error) {
	if setupreg.Func == nil {
		return func(context.Context) error { return nil }, ErrNoSetup
	}
	return setupreg.Func(ctx, serviceName)
}
