//go:build !amd64 && !arm64

package goid

import "runtime"

// get parses the goroutine number from the first line of runtime.Stack ("goroutine 18 [...").
func get() uintptr {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	var id uintptr
	for _, c := range buf[len("goroutine "):n] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uintptr(c-'0')
	}
	return id
}
