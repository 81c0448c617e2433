package queue

import (
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// The executor runs at most GOMAXPROCS workers, so blocks that block (I/O, sleeps, channel
// waits) can hold every worker while other queues wait: GCD's thread starvation. Like
// libdispatch's monitor on Linux, a monitor goroutine watches the roots while they have
// work and lends one more worker when, at one of its ticks (every stallThreshold):
//
//   - items wait, every worker is taken, and no root item has started since the last tick;
//   - the workers are blocked, not busy: over that time the process used less CPU than the
//     running workers would (half a CPU less, at least) if they were computing;
//   - the process has CPU to give: no goroutine waits for a P (the Go scheduler's count;
//     the monitor holds a P while it looks, and gives it up right after).
//
// So a CPU-bound block, however long, and an overloaded machine get no extra goroutine:
// more goroutines would only take turns on the same CPUs. At most maxExtraWorkers are lent
// at once; lent workers are retired as soon as the roots run dry. The monitor exits the
// moment the last worker does with the roots empty, so an idle program holds no goroutine
// for it, and the next item starts it again. There is one monitor per pool (per synctest
// bubble, see pool); inside a bubble its ticks come on the bubble's fake clock, which moves
// only while every goroutine of the bubble is blocked.

const (
	// stallThreshold is how long the roots may make no progress, with work waiting, before
	// the monitor looks at why and may lend a worker.
	stallThreshold = 20 * time.Millisecond
	// maxExtraWorkers caps the workers lent beyond GOMAXPROCS at once (documented in the
	// package doc and ExecutorStats.Lent).
	maxExtraWorkers = 256
)

// capLocked is the number of workers of pool p that may run blocks now.
// It reads atomics only: hand and takeHanded call it without the lock.
func (e *executor) capLocked(p *pool) int32 { return e.procs() + p.extra.Load() }

// noLending holds the monitor back; tests that need workers to stay scarce set it.
var noLending atomic.Bool

// procSample is what the monitor reads of the process.
type procSample struct {
	cpu      time.Duration // CPU time used so far, user and system; -1 if the OS does not say
	runnable uint64        // goroutines waiting for a P now
}

// sampleProcess reads the process's CPU time and the Go scheduler's counts. Tests replace it
// (setSampler) to make the monitor's decisions deterministic.
func sampleProcess() procSample {
	m := [1]metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
	metrics.Read(m[:])
	s := procSample{cpu: processCPU()}
	if m[0].Value.Kind() == metrics.KindUint64 {
		s.runnable = m[0].Value.Uint64()
	}
	return s
}

var sampler atomic.Pointer[func() procSample]

func sample() procSample {
	if f := sampler.Load(); f != nil {
		return (*f)()
	}
	return sampleProcess()
}

// blockedWithCPUToGive reports whether workers of pool p are blocked (not computing) and the
// process has CPU for one more, from the samples at the start and the end of a window of
// the given length; running is the count of workers running blocks (not waiting in a Sync).
func blockedWithCPUToGive(start, end procSample, window time.Duration, running, procs int32) bool {
	if end.runnable > 0 {
		return false // goroutines already wait for the CPUs there are: a CPU-bound block, say
	}
	if start.cpu < 0 || end.cpu < 0 || window <= 0 {
		return true // no CPU time here: the scheduler's counts decide
	}
	busy := min(running, procs)
	used := end.cpu - start.cpu
	return 2*used < (2*time.Duration(busy)-1)*window // used < (busy - 1/2) CPUs over the window
}

// monitor watches pool p until the pool goes idle, which closes idle (see idleLocked).
// Its timer and channel belong to the bubble of the goroutine that started it, which is the
// pool's, and so do the workers it lends.
func (e *executor) monitor(p *pool, idle chan struct{}) {
	t := time.NewTimer(stallThreshold)
	defer t.Stop()
	// The window the monitor judges CPU use over starts at the previous tick, if items
	// waited then too: the samples cost a syscall and the scheduler's lock, so ticks with
	// nothing waiting (a sleeping block that already has company) take none.
	prev, prevAt, havePrev := sample(), time.Now(), true
	e.mu.Lock()
	last := p.started
	for {
		e.mu.Unlock()
		select {
		case <-idle:
			return
		case <-t.C:
		}
		e.mu.Lock()
		waiting := p.n > 0 || e.handedLocked(p) > 0
		e.mu.Unlock()
		var cur procSample
		at := time.Now()
		if waiting {
			cur = sample()
		}
		e.mu.Lock()
		if p.idle != idle {
			e.mu.Unlock()
			return
		}
		if p.started == last {
			// No progress: drains handed to stuck workers go to the roots, where other
			// workers (and a lent one) can take them.
			e.reclaimPoolLocked(p)
		}
		running := p.workers.Load() - p.blocked.Load()
		switch {
		case p.n == 0:
			p.extra.Store(0) // nothing waits: no need for lent workers
		case waiting && havePrev && p.started == last && !noLending.Load() &&
			running >= e.capLocked(p) && p.extra.Load() < maxExtraWorkers && p.workers.Load() < maxWorkers &&
			blockedWithCPUToGive(prev, cur, at.Sub(prevAt), running, e.procs()):
			p.extra.Add(1)
			e.extraTotal++
			p.workers.Add(1)
			go e.work(p)
		}
		last = p.started
		prev, prevAt, havePrev = cur, at, waiting
		t.Reset(stallThreshold)
	}
}

// ExecutorStats describes the shared executor that runs the Global queues.
type ExecutorStats struct {
	GOMAXPROCS int    // the width of the Global queues
	Workers    int    // worker goroutines now
	Blocked    int    // of those, waiting in a Sync (another may run in their place)
	Lent       int    // workers lent now because all the others were blocked; at most 256
	LentTotal  uint64 // workers ever lent
	Queued     int    // items waiting in the Global queues
}

// Executor returns a snapshot of the shared executor's state.
func Executor() ExecutorStats {
	e := exec
	e.mu.Lock()
	defer e.mu.Unlock()
	s := ExecutorStats{GOMAXPROCS: int(e.procs()), LentTotal: e.extraTotal}
	e.poolsLocked(func(p *pool) {
		s.Workers += int(p.workers.Load())
		s.Blocked += int(p.blocked.Load())
		s.Lent += int(p.extra.Load())
		s.Queued += int(p.n + e.handedLocked(p))
	})
	return s
}
