package dispatch

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/dispatchkit/dispatchkit/queue"
)

// Apply calls fn(i) for every i in [0, n), in parallel up to q's width, and returns when all
// have returned (dispatch_apply). The calling goroutine takes part; up to width-1 helper
// blocks run on q, taking runs of indexes as they go, so uneven iterations balance
// themselves, and Apply finishes even if no helper ever gets to run (a busy or suspended
// queue): the caller then does it all. A caller that is running a block of q uses the slot
// it holds, so Apply from inside q keeps to q's width.
//
// On a serial queue (width 1) the iterations run one after another, as one Sync block on q,
// or inline if the caller is already running on q or on a queue that targets it. A nested
// Apply, called from an iteration of an Apply on the same q, runs inline: the outer one
// already spreads over q's width, as in GCD.
//
// If fn panics, the other participants stop taking new indexes, Apply waits for the
// iterations already running, and then panics in the caller with the first panic's value,
// unchanged, so that a recover upstream sees what fn panicked with.
//
// Apply panics if q is closed, as Sync does.
func Apply(q *queue.Queue, n int, fn func(i int)) {
	if n <= 0 {
		return
	}
	width := q.Width()
	if width <= 1 || n == 1 {
		if q.IsCurrent() {
			inline(n, fn) // a Sync onto the queue that runs the caller would wait for itself
			return
		}
		q.Sync(func() { inline(n, fn) })
		return
	}
	if q.Closed() {
		panic(fmt.Sprintf("dispatch: Apply on closed queue %q (Apply before Close, or onto another queue)", q.Label()))
	}
	me := goid.G()
	if outer, ok := applying.Load(me); ok && outer.(*queue.Queue) == q {
		inline(n, fn)
		return
	}
	// Participants take runs of indexes, about 8 runs per participant in all, so that the
	// shared counter is touched rarely while late or slow participants still even out.
	step := max(1, n/(width*8))
	a := &applyRun{q: q, n: int64(n), step: int64(step), fn: fn, done: make(chan struct{})}
	a.left.Store(int64(n))
	runs := (n + step - 1) / step
	for range min(width, runs) - 1 {
		if q.TryAsync(a.help) != nil {
			break // full, or closed since: the caller does the rest
		}
	}
	a.work(me)
	<-a.done
	if p := a.panicked.Load(); p != nil {
		panic(p.value)
	}
}

func inline(n int, fn func(int)) {
	for i := range n {
		fn(i)
	}
}

// applying maps each goroutine running iterations of an Apply to that Apply's queue, so that
// an Apply nested in one of them can tell. Entries live only while a participant works.
var applying sync.Map // goid.G() -> *queue.Queue

// applyRun is one Apply's shared state. Every index is accounted for exactly once, by the
// participant that took it, whether it ran it or skipped it after a panic; the one that
// accounts for the last index releases the caller. So the caller returns only when every
// iteration that started has finished.
type applyRun struct {
	q        *queue.Queue
	n, step  int64
	fn       func(int)
	next     atomic.Int64 // the first index nobody has taken
	left     atomic.Int64 // indexes taken by nobody, or taken and not finished
	stopped  atomic.Bool  // an iteration panicked: skip the rest
	done     chan struct{}
	panicked atomic.Pointer[recovered] // the first panic
}

type recovered struct{ value any }

// help is a helper block's part.
func (a *applyRun) help() { a.work(goid.G()) }

// work takes runs of indexes until none is left. After a panic it still takes them, skipping
// them, so that the count of indexes left reaches zero.
func (a *applyRun) work(me uintptr) {
	prev, had := applying.Swap(me, a.q)
	defer func() {
		if had {
			applying.Store(me, prev) // an Apply onto another queue, nested in an iteration
		} else {
			applying.Delete(me)
		}
	}()
	for {
		end := a.next.Add(a.step)
		start := end - a.step
		if start >= a.n {
			return
		}
		end = min(end, a.n)
		a.iterate(start, end)
		if a.left.Add(start-end) == 0 {
			close(a.done)
		}
	}
}

func (a *applyRun) iterate(start, end int64) {
	defer func() {
		if r := recover(); r != nil {
			a.panicked.CompareAndSwap(nil, &recovered{r})
			a.stopped.Store(true)
		}
	}()
	for i := start; i < end && !a.stopped.Load(); i++ {
		a.fn(int(i))
	}
}
