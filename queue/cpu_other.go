//go:build !unix

package queue

import "time"

// processCPU returns -1: this OS's CPU time is not read here, and the stall monitor decides
// on the Go scheduler's counts alone.
func processCPU() time.Duration { return -1 }
