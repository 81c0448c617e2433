// Package goid tells goroutines apart cheaply.
//
// The queue executor needs to know "which goroutine is calling" on its Sync path (to detect
// a Sync that would wait for the goroutine itself) without paying for it on the Async path.
// runtime.Stack costs microseconds; reading the runtime's current-goroutine pointer costs a
// couple of nanoseconds, so that is what G does on amd64 and arm64. Elsewhere it falls back
// to parsing runtime.Stack.
package goid

// G returns a value that identifies the calling goroutine among the goroutines alive at the
// same time. Once a goroutine exits its value may be reused by a new one, so callers must
// forget a goroutine's value before it can exit.
func G() uintptr { return get() }
