//go:build unix

package queue

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process has used so far, user and system, or -1 if the
// OS does not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
