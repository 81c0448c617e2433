package dispatch

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/queue"
)

// A WorkItem is a block that can be cancelled before it runs, waited for, and followed by
// other blocks (dispatch_block_t with dispatch_block_create, cancel, wait and notify).
type WorkItem struct {
	fn        func()
	cancelled atomic.Bool

	mu       sync.Mutex
	ran      bool          // Run was called
	done     chan struct{} // closed when Run has returned
	notify   []notification
	onCancel func() // After: stop the timer
}

// NewWorkItem returns a work item that runs fn.
func NewWorkItem(fn func()) *WorkItem {
	if fn == nil {
		panic("dispatch: NewWorkItem with a nil func")
	}
	return &WorkItem{fn: fn, done: make(chan struct{})}
}

// Run runs the item's fn unless it was cancelled first. It acts at most once ever: a
// second Run does nothing. Submit it to a queue with q.Async(w.Run).
func (w *WorkItem) Run() {
	w.mu.Lock()
	if w.ran {
		w.mu.Unlock()
		return
	}
	w.ran = true
	w.mu.Unlock()
	defer w.finish()
	if !w.cancelled.Load() {
		w.fn()
	}
}

func (w *WorkItem) finish() {
	w.mu.Lock()
	close(w.done)
	notify := w.notify
	w.notify = nil
	w.mu.Unlock()
	for _, n := range notify {
		n.submit()
	}
}

// Cancel keeps the item's fn from running if it has not started; it never interrupts a
// running fn. A cancelled item from After finishes at once (Wait returns, notifications run),
// unless it has already been queued: then it finishes when its queue reaches it.
func (w *WorkItem) Cancel() {
	w.cancelled.Store(true)
	w.mu.Lock()
	stop := w.onCancel
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Cancelled reports whether Cancel was called.
func (w *WorkItem) Cancelled() bool { return w.cancelled.Load() }

// Wait returns once Run has been called and returned (whether fn ran or the item was
// cancelled), or with ctx's error if ctx ends first.
func (w *WorkItem) Wait(ctx context.Context) error {
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify submits fn to q after Run has returned (at once if it already has). If q is closed
// by then, fn is dropped, and q counts it in Stats.Rejected: neither Notify nor the Run that
// finishes the item panics for it. On a full queue (WithLimit) the submission waits for room
// in whichever of the two submits it, as Async does.
func (w *WorkItem) Notify(q *queue.Queue, fn func()) {
	if fn == nil {
		panic("dispatch: WorkItem.Notify with a nil func")
	}
	w.mu.Lock()
	select {
	case <-w.done:
		w.mu.Unlock()
		notification{q, fn}.submit()
		return
	default:
	}
	w.notify = append(w.notify, notification{q, fn})
	w.mu.Unlock()
}
