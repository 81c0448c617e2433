//go:build !linux

package wsserver

import "syscall"

// nbWrite is write(2) on a non-blocking descriptor (on Linux made raw: nbsys_linux.go).
func nbWrite(fd uintptr, p []byte) (int, error) { return sysWrite(syscall.Write, fd, p) }

// sysWrite calls write with fd as the descriptor type of the platform (an int on Unix).
func sysWrite[H ~int | ~uintptr](write func(H, []byte) (int, error), fd uintptr, p []byte) (int, error) {
	return write(H(fd), p)
}
