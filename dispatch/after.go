package dispatch

import (
	"context"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
)

// After submits fn to q once d has passed (dispatch_after) and returns its work item, which
// can cancel it until it starts, and which Wait and Notify follow. Waiting costs a runtime
// timer (time.AfterFunc), no goroutine. On a full queue (WithLimit) the item waits for room
// on the timer's goroutine, until it is cancelled. If q is closed by the time d has passed,
// or while the item waits for room, fn is dropped and the item ends as cancelled: closing a
// queue is how its owner says no more work (q counts the refusal in Stats.Rejected).
func After(d time.Duration, q *queue.Queue, fn func()) *WorkItem {
	if q == nil {
		panic("dispatch: After with a nil queue")
	}
	w := NewWorkItem(fn)
	w.mu.Lock()
	defer w.mu.Unlock()
	t := time.AfterFunc(d, func() { w.submitAfter(q) })
	w.onCancel = func() {
		if t.Stop() {
			w.Run() // the timer will never fire: finish now, as cancelled
		}
	}
	return w
}

// submitAfter hands an After's item to q, on the timer's goroutine. A Cancel from here on
// ends a wait for room, and the item finishes at once, as cancelled.
func (w *WorkItem) submitAfter(q *queue.Queue) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	w.mu.Lock()
	w.onCancel = stop
	w.mu.Unlock()
	// Cancel sets cancelled before it reads onCancel: either it called stop, or this sees it.
	if w.cancelled.Load() {
		w.Run()
		return
	}
	if err := q.Submit(ctx, w.Run); err != nil {
		w.cancelled.Store(true) // refused by a closed queue, or cancelled while waiting
		w.Run()                 // finishes the item: Wait returns, notifications go out
	}
}
