package queue

import (
	"context"
	"sync/atomic"
	"time"
)

// item is one entry of a queue: a plain block (fn), the drain of a queue that targets this
// one (child), or a block with extras (x: context, barrier, a Sync caller waiting its turn).
type item struct {
	fn    func()
	child *Queue
	x     *ext
}

// ext carries what a plain Async block does not need, so that one costs two words.
type ext struct {
	fn     func()
	call   func(fn func()) // a Guarded's: runs the item's fn, a func(*T) in disguise (guarded.go)
	cfn    func(context.Context)
	ctx    context.Context
	enq    time.Time
	kind   BlockKind
	waiter *syncWaiter
	site   string // where the block was submitted, with WithCallSites
}

// exclusive reports whether the item must run alone on a concurrent queue.
func (it item) exclusive() bool {
	x := it.x
	return x != nil && (x.kind == BlockBarrier || (x.waiter != nil && x.waiter.excl))
}

func (it item) waiter() *syncWaiter {
	if it.x == nil {
		return nil
	}
	return it.x.waiter
}

// syncWaiter is a Sync caller waiting for its turn on a busy queue. The drainer that reaches
// it hands it the queue (or a slot of it) instead of running anything itself.
type syncWaiter struct {
	g     uintptr
	excl  bool
	state atomic.Int32
	ch    chan struct{}
}

const (
	waiting int32 = iota
	granted
	gaveUp
)

// claim marks the waiter granted; false if it gave up first. The drainer claims it under the
// queue's lock, records the waiter as the queue's holder, then wakes it.
func (w *syncWaiter) claim() bool { return w.state.CompareAndSwap(waiting, granted) }

func (w *syncWaiter) wake() { close(w.ch) }
