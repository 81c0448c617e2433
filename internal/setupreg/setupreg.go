// Package setupreg links tracing.Setup to the SDK set-up of tracing/otelsetup without an
// import from tracing to otelsetup, so that importing the Observer never links the exporters.
// otelsetup registers itself here from its init; a program that imports it (directly, or
// blank) gets a working tracing.Setup.
package setupreg

import "context"

// Func is otelsetup.Setup once otelsetup is linked into the program, nil before.
var Func func(ctx context.Context, serviceName string) (func(context.Context) error, error)
