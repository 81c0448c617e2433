package dispatch

import (
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/queue"
)

// Apply calls fn(i) for every i in [0, n), in parallel up to q's width, and returns when all
// have returned (dispatch_apply). The calling goroutine takes part; up to width-1 helper
// blocks run on q, taking indexes as they go, so uneven iterations balance themselves. On a
// serial queue the iterations run one after another, as one block on q. A caller already
// running on q runs them itself, inline (a nested Apply never waits for its own queue).
//
// If fn panics, the other participants stop taking new indexes, Apply waits for the ones
// running, and then panics in the caller with the first panic's value (as it was, so that
// a recover upstream sees what fn panicked with).
func Apply(q *queue.Queue, n int, fn func(i int)) {
	if n <= 0 {
		return
	}
	if q.IsCurrent() {
		for i := range n {
			fn(i)
		}
		return
	}
	width := q.Width()
	if width <= 1 || n == 1 {
		q.Sync(func() {
			for i := range n {
				fn(i)
			}
		})
		return
	}
	// Participants take runs of indexes, about 8 per participant in all, so that the shared
	// counter is touched rarely while late or slow participants still even out.
	step := max(1, n/(width*8))
	a := &applyRun{n: int64(n), step: int64(step), fn: fn, done: make(chan struct{})}
	for range min(width, n) - 1 {
		q.Async(a.work)
	}
	a.work()
	<-a.done
	if a.panicked != nil {
		panic(a.panicked)
	}
}

// applyRun is one Apply's shared state: an index counter that participants take from, and a
// count of iterations in progress.
type applyRun struct {
	n       int64
	step    int64
	fn      func(int)
	next    atomic.Int64
	running atomic.Int64
	stopped atomic.Bool
	once    sync.Once
	done    chan struct{}

	panicOnce sync.Once
	panicked  any
}

// work takes runs of indexes until none are left (or a panic stopped the run).
func (a *applyRun) work() {
	for {
		a.running.Add(1) // before taking indexes, so that "running == 0" means it
		end := a.next.Add(a.step)
		start := end - a.step
		if start >= a.n || a.stopped.Load() {
			a.leave()
			return
		}
		a.iterate(int(start), int(min(end, a.n)))
	}
}

func (a *applyRun) iterate(start, end int) {
	defer func() {
		if r := recover(); r != nil {
			a.panicOnce.Do(func() { a.panicked = r })
			a.stopped.Store(true)
		}
		a.leave()
	}()
	for i := start; i < end && !a.stopped.Load(); i++ {
		a.fn(i)
	}
}

// leave ends one participant's iteration (or its last look for one); the last to leave once
// every index is taken releases the caller.
func (a *applyRun) leave() {
	if a.running.Add(-1) == 0 && (a.next.Load() >= a.n || a.stopped.Load()) {
		a.once.Do(func() { close(a.done) })
	}
}
