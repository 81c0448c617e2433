package dispatch

import (
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
)

// After submits fn to q once d has passed (dispatch_after) and returns its work item, which
// can cancel it until it starts, and which Wait and Notify follow. Waiting costs a runtime
// timer (time.AfterFunc), no goroutine. If q has been closed by the time d has passed, fn is
// dropped and the item ends as cancelled: closing a queue is how its owner says no more work.
func After(d time.Duration, q *queue.Queue, fn func()) *WorkItem {
	if q == nil {
		panic("dispatch: After with a nil queue")
	}
	w := NewWorkItem(fn)
	w.mu.Lock()
	defer w.mu.Unlock()
	t := time.AfterFunc(d, func() {
		if !submitTo(q, w.Run) {
			w.cancelled.Store(true)
			w.Run() // finishes the item: Wait returns, notifications go out
		}
	})
	w.onCancel = func() {
		if t.Stop() {
			w.Run() // the timer will never fire: finish now, as cancelled
		}
	}
	return w
}
