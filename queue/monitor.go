package queue

import (
	"sync/atomic"
	"time"
)

// The executor runs at most GOMAXPROCS workers, so blocks that block (I/O, sleeps, channel
// waits) can hold every worker while other queues wait: GCD's thread starvation. Like
// libdispatch's monitor on Linux, a monitor goroutine watches the roots while they have
// work: if no root item has started for a whole stallThreshold while items wait and every
// worker is taken, it lends one more worker, up to maxExtraWorkers. Lent workers are retired
// as soon as the roots run dry. The monitor exits the moment the last worker does with the
// roots empty, so an idle program holds no goroutine for it, and the next item starts it
// again. There is one monitor per pool (per synctest bubble, see pool).

const (
	// stallThreshold is how long the roots may make no progress, with work waiting, before
	// the monitor lends a worker.
	stallThreshold = 20 * time.Millisecond
	// maxExtraWorkers caps the workers lent beyond GOMAXPROCS.
	maxExtraWorkers = 256
)

// capLocked is the number of workers of pool p that may run blocks now.
func (e *executor) capLocked(p *pool) int32 { return e.procs() + p.extra }

// noLending holds the monitor back; tests that need workers to stay scarce set it.
var noLending atomic.Bool

// monitor watches pool p until the pool goes idle, which closes idle (see idleLocked).
// Its timer and channel belong to the bubble of the goroutine that started it, which is the
// pool's, and so do the workers it lends.
func (e *executor) monitor(p *pool, idle chan struct{}) {
	t := time.NewTimer(stallThreshold)
	defer t.Stop()
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
		if p.idle != idle {
			e.mu.Unlock()
			return
		}
		if p.n == 0 {
			p.extra = 0 // nothing waits: no need for lent workers
		} else if p.started == last && !noLending.Load() && p.workers-p.blocked >= e.capLocked(p) && p.extra < maxExtraWorkers && p.workers < maxWorkers {
			p.extra++
			e.extraTotal++
			p.workers++
			go e.work(p)
		}
		last = p.started
		t.Reset(stallThreshold)
	}
}

// ExecutorStats describes the shared executor that runs the Global queues.
type ExecutorStats struct {
	GOMAXPROCS int    // the width of the Global queues
	Workers    int    // worker goroutines now
	Blocked    int    // of those, waiting in a Sync (another may run in their place)
	Lent       int    // workers lent now because all the others were stuck
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
		s.Workers += int(p.workers)
		s.Blocked += int(p.blocked)
		s.Lent += int(p.extra)
		s.Queued += int(p.n)
	})
	return s
}
