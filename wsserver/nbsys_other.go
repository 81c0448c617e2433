//go:build !linux

package wsserver

import "syscall"

// nbWrite is write(2) on a non-blocking descriptor (on Linux made raw: nbsys_linux.go).
func nbWrite(fd uintptr, p []byte) (int, error) { return sysWrite(syscall.Write, fd, p) }
