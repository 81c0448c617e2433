package queue

import (
	"context"
	"runtime/debug"
	"time"
)

// runBlock runs one item of q on goroutine g: the drain of a queue targeting q, or an
// accepted block. It reports whether it was an accepted block, which the caller then counts
// as finished (drainers count a batch at a time).
func (q *Queue) runBlock(it item, g uintptr) bool {
	if it.child != nil {
		if it.child.flags.Load()&flagChildBoost != 0 {
			exec.childStarted(it.child) // the override this drain asked for ends
		}
		it.child.drain(g, nil)
		if q.kind != rootKind {
			q.setLabels() // back to this queue's name after the child's batch
		}
		// A root's worker sets its labels before its next item, or before it waits for one
		// (executor.work): not after every drain, which would cost ping-pong a label switch
		// per hop.
		return false
	}
	if q.limit > 0 {
		q.started()
	}
	if it.x == nil && q.cfg == nil {
		// The hot path: no observer, no handler, no context. A panic here crashes the
		// program with the block's own stack, as a panicking goroutine does.
		it.fn()
		return true
	}
	if it.x != nil && it.x.call != nil && q.cfg == nil {
		it.x.call(it.fn) // a Guarded's Async: no closure was made for it (guarded.go)
		return true
	}
	q.runSlow(it)
	return true
}

// runFirst is runBlock for the drain of c handed to a worker with c's first block, fn
// (executor.handFirst), on a root.
func runFirst(c *Queue, fn func(), g uintptr) {
	if c.flags.Load()&flagChildBoost != 0 {
		exec.childStarted(c) // the override this drain asked for ends
	}
	c.drain(g, fn)
}

// runSlow runs a block that has a context, an observer or a panic handler.
func (q *Queue) runSlow(it item) {
	x := it.x
	if x == nil {
		x = &ext{fn: it.fn}
	}
	if x.cfn != nil && x.ctx != nil && x.ctx.Err() != nil {
		q.countCancelled() // AsyncContext whose ctx ended before it started: skipped
		return
	}
	var obs Observer
	var panics func(any, []byte)
	if q.cfg != nil {
		obs, panics = q.cfg.obs, q.cfg.panics
	}
	if !observing {
		obs = nil
	}
	ctx := x.ctx
	var info BlockInfo
	var start time.Time
	if obs != nil {
		if ctx == nil {
			ctx = context.Background()
		}
		start = now()
		info = BlockInfo{Kind: x.kind, Enqueued: x.enq, Wait: start.Sub(x.enq), Site: x.site}
		ctx = obs.Started(q, ctx, info)
	}
	var prev saved
	if ctx != nil {
		prev = swapCurrent(ctx)
	}
	catch := panics != nil || obs != nil
	returned := false
	defer func() {
		var r any
		if !returned && catch {
			r = recover()
		}
		// Not returned and nothing to recover: runtime.Goexit, which goes on unwinding after
		// this. The drains up the stack repair their queues (see drainerExited).
		goexit := !returned && catch && r == nil
		var stack []byte
		if r != nil && panics != nil {
			stack = debug.Stack()
			if x.site != "" {
				stack = append([]byte("block submitted at "+x.site+"\n"), stack...)
			}
		}
		prev.restore()
		if obs != nil {
			info.Run, info.Panic = now().Sub(start), r
			if goexit {
				info.Panic = ErrGoexit
			}
			obs.Finished(q, ctx, info)
		}
		if r != nil {
			if panics == nil {
				panic(r) // no handler: crash, after the observer has seen it
			}
			panics(r, stack)
		}
	}()
	switch {
	case x.cfn != nil:
		x.cfn(ctx)
	case x.call != nil:
		x.call(it.fn)
	default:
		x.fn()
	}
	returned = true
}

// observeEnqueue tells the observer about a block being submitted and keeps what it returns.
// A block without a context of its own (Async) takes the submitter's current one, so a trace
// follows work that blocks hand on to other queues.
func (q *Queue) observeEnqueue(it item, k BlockKind) item {
	ctx := CurrentContext()
	if it.x != nil && it.x.ctx != nil {
		ctx = it.x.ctx
	}
	if it.x == nil {
		it.x = &ext{fn: it.fn, kind: k}
		it.fn = nil
	}
	it.x.enq = now()
	it.x.ctx = q.cfg.obs.Enqueued(q, ctx, k)
	return it
}
