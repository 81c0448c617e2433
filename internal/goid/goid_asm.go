//go:build amd64 || arm64

package goid

// get returns the runtime's pointer to the calling goroutine (implemented in assembly).
func get() uintptr
