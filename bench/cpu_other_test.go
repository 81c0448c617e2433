//go:build !linux

package bench

import "time"

// processCPU and threadCPU are unknown here (-1): the sparse benchmarks report no CPU.
func processCPU() time.Duration { return -1 }

func threadCPU() time.Duration { return -1 }
