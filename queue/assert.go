package queue

import (
	"fmt"

	"github.com/dispatchkit/dispatchkit/internal/goid"
)

// AssertOn panics unless the caller is running on q: in a block of q or of a queue that
// targets q, or inside a Sync onto one of them (GCD's dispatchPrecondition(.onQueue)). Use it
// at the top of code that touches state q owns.
func AssertOn(q *Queue) {
	if !q.IsCurrent() {
		panic(fmt.Sprintf("queue: AssertOn(%q): the caller is not running on %q (submit this code to it with Async or Sync)", q.label, q.label))
	}
}

// AssertNotOn panics if the caller is running on q (dispatchPrecondition(.notOnQueue)): for
// code that is about to wait for q, which would deadlock if q were running it.
func AssertNotOn(q *Queue) {
	if q.IsCurrent() {
		panic(fmt.Sprintf("queue: AssertNotOn(%q): the caller is running on %q and would wait for itself", q.label, q.label))
	}
}

// AssertBarrier panics unless the caller runs on q alone: a block of a serial q, a barrier of
// a concurrent q, or inside one of them (dispatchPrecondition(.onQueueAsBarrier)).
func AssertBarrier(q *Queue) {
	me := goid.G()
	q.mu.Lock()
	alone := q.ownerLocked() == me
	q.mu.Unlock()
	if !alone {
		panic(fmt.Sprintf("queue: AssertBarrier(%q): the caller is not running on %q as a barrier (use BarrierAsync or BarrierSync)", q.label, q.label))
	}
}
