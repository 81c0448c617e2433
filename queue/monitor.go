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
// as soon as the roots run dry. The monitor exits when the roots are empty, so an idle
// program holds no goroutine for it.

const (
	// stallThreshold is how long the roots may make no progress, with work waiting, before
	// the monitor lends a worker.
	stallThreshold = 20 * time.Millisecond
	// maxExtraWorkers caps the workers lent beyond GOMAXPROCS.
	maxExtraWorkers = 256
)

// capLocked is the number of workers that may run blocks now.
func (e *executor) capLocked() int32 { return e.procs() + e.extra }

// noLending holds the monitor back; tests that need workers to stay scarce set it.
var noLending atomic.Bool

func (e *executor) monitor() {
	t := time.NewTimer(stallThreshold)
	defer t.Stop()
	e.mu.Lock()
	last := e.started
	for {
		e.mu.Unlock()
		<-t.C
		e.mu.Lock()
		if !e.hasItemsLocked() {
			if e.workers == 0 {
				e.monitoring = false
				e.extra = 0
				e.mu.Unlock()
				return
			}
			e.extra = 0 // nothing waits: no need for lent workers
		} else if e.started == last && !noLending.Load() && e.workers-e.blocked >= e.capLocked() && e.extra < maxExtraWorkers && e.workers < maxWorkers {
			e.extra++
			e.extraTotal++
			e.workers++
			go e.work()
		}
		last = e.started
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
	n := 0
	for i := range e.items {
		n += e.items[i].n
	}
	return ExecutorStats{
		GOMAXPROCS: int(e.procs()), Workers: int(e.workers), Blocked: int(e.blocked),
		Lent: int(e.extra), LentTotal: e.extraTotal, Queued: n,
	}
}
