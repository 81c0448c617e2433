package dispatch

import (
	"context"
	"sync"

	"github.com/dispatchkit/dispatchkit/queue"
)

// A Group tracks a set of blocks (or any work bracketed by Enter and Leave) so that a caller
// can wait for all of them, or have a block run when they are done. The zero value is ready
// to use. A Group must not be copied after first use.
type Group struct {
	mu     sync.Mutex
	n      int
	done   chan struct{} // closed when n drops to 0; nil while nothing waits
	notify []notification
}

type notification struct {
	q  *queue.Queue
	fn func()
}

// submit queues the notification's block. On a closed queue it is dropped, and the queue
// counts it (Stats.Rejected, the Observer's Rejected): the block that happened to finish the
// group or the item is not to blame, so nothing panics in it.
func (n notification) submit() {
	_ = n.q.Submit(context.Background(), n.fn)
}

// Async submits fn to q as part of the group (dispatch_group_async). It panics, as q.Async
// does, if q is closed; the group is then left as it was.
func (g *Group) Async(q *queue.Queue, fn func()) {
	if fn == nil {
		panic("dispatch: Group.Async with a nil func")
	}
	g.Enter()
	accepted := false
	defer func() {
		if !accepted {
			g.Leave() // q refused the block: it will never leave for itself
		}
	}()
	q.Async(func() {
		defer g.Leave()
		fn()
	})
	accepted = true
}

// Enter adds one unit of work to the group (dispatch_group_enter); Leave must follow.
func (g *Group) Enter() {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
}

// Leave marks one unit of work done (dispatch_group_leave). It panics if called more often
// than Enter: an unbalanced Leave is a bug.
func (g *Group) Leave() {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		panic("dispatch: Group.Leave without a matching Enter (unbalanced Leave)")
	}
	g.n--
	if g.n > 0 {
		g.mu.Unlock()
		return
	}
	if g.done != nil {
		close(g.done)
		g.done = nil
	}
	notify := g.notify
	g.notify = nil
	g.mu.Unlock()
	for _, n := range notify {
		n.submit()
	}
}

// Wait returns nil once every unit of work entered has left, or ctx's error if ctx ends
// first (dispatch_group_wait). Waiting inside a block holds its worker.
func (g *Group) Wait(ctx context.Context) error {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.done == nil {
		g.done = make(chan struct{})
	}
	done := g.done
	g.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify submits fn to q once the group is empty (dispatch_group_notify): at once if it is
// empty now, otherwise when the last unit of work leaves. It runs once. If q is closed by
// then, fn is dropped, and q counts it in Stats.Rejected: neither Notify nor the Leave that
// empties the group panics for it. On a full queue (WithLimit) the submission waits for room
// in whichever of the two submits it, as Async does.
func (g *Group) Notify(q *queue.Queue, fn func()) {
	if fn == nil {
		panic("dispatch: Group.Notify with a nil func")
	}
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		notification{q, fn}.submit()
		return
	}
	g.notify = append(g.notify, notification{q, fn})
	g.mu.Unlock()
}
