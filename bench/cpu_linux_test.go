//go:build linux

package bench

import (
	"syscall"
	"time"
	"unsafe"
)

// clockCPU reads a CPU-time clock with clock_gettime, exact to the nanosecond (getrusage's
// figures move in scheduler ticks here); -1 if it fails.
func clockCPU(clock uintptr) time.Duration {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clock, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return -1
	}
	return time.Duration(ts.Nano())
}

// processCPU is the CPU time all the process's threads have used so far, user and system.
func processCPU() time.Duration { return clockCPU(2) } // CLOCK_PROCESS_CPUTIME_ID

// threadCPU is the CPU time the calling thread has used so far.
func threadCPU() time.Duration { return clockCPU(3) } // CLOCK_THREAD_CPUTIME_ID
