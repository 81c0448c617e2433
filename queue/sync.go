package queue

import (
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/internal/goid"
)

// Sync runs fn on the queue and returns when it has finished. As in GCD, fn runs on the
// caller's goroutine: Sync waits until the queue (and every serial queue up its target chain)
// is the caller's, runs fn, and gives them back. It never takes a Global worker, and on an
// idle queue it does not switch goroutines at all. A panic in fn reaches the caller. fn runs
// under the caller's CurrentContext, which an Observer sees as the block's parent, as for Async.
//
// A caller that already runs on q, or on a queue up q's chain, holds part of what it waits
// for. Where it holds a slot of a concurrent queue (it runs a block of that queue, or of a
// queue targeting it), fn runs at once in that slot, ahead of the blocks waiting there, as
// GCD runs a dispatch_sync from a block of the same concurrent queue: a nested Sync onto a
// WithWidth(1) queue, or onto a sibling through a shared concurrent target, does not wait for
// its own caller. Where it holds a queue alone (a serial queue, or a barrier), waiting would
// wait for itself: Sync panics, naming the queues (SyncContext returns ErrWouldDeadlock). So
// it does when it would have to wait for a queue whose blocks need the only slot of a
// concurrent queue that the caller holds (a busy sibling under a width-1 target). Sync also
// panics if the queue is closed.
func (q *Queue) Sync(fn func()) {
	if fn == nil {
		nilFunc("Sync", q.label)
	}
	if q.kind == serialKind {
		// Sync's short way onto an idle serial queue that targets a root, with no observer
		// and no specifics (a Sync used as a lock): one CAS takes the queue, syncPlain runs fn
		// and gives it back. Sync has no ctx to look at. Where syncRun must decide (the queue
		// is held, closed, stopped or on a chain), it does, nothing done here. Written out
		// here, not called: a Sync used as a lock pays for each call.
		me := goid.G()
		if uint64(me) < 1<<(64-holdShift) && q.plainSync() &&
			q.target.Load().kind == rootKind && // (looked at again once the queue is held)
			q.takeIdleSync(holdBusy|holdFast|uint64(me)<<holdShift) {
			if t := q.target.Load(); t.kind == rootKind {
				q.syncPlain(me, t, fn)
				return
			}
			q.releaseSerialSync(me) // a chain to acquire
		}
	}
	if err := q.syncRun(context.Background(), false, fn, nil); err != nil {
		panic(fmt.Sprintf("%v (use Async, or SyncContext to get an error)", err))
	}
}

// SyncContext is Sync with a context: if ctx ends before fn starts, fn never runs and ctx's
// error is returned; once fn has started it runs to the end with ctx. It returns ErrClosed on
// a closed queue and an error wrapping ErrWouldDeadlock where Sync would panic.
func (q *Queue) SyncContext(ctx context.Context, fn func(context.Context)) error {
	if fn == nil {
		nilFunc("SyncContext", q.label)
	}
	return q.syncRun(ctx, false, nil, fn)
}

// BarrierSync is Sync as a barrier: on a concurrent queue fn runs once every block submitted
// before it has finished, alone, and later blocks wait for it. From a block of that same
// concurrent queue it would wait for its own caller: it panics (ErrWouldDeadlock).
func (q *Queue) BarrierSync(fn func()) {
	if fn == nil {
		nilFunc("BarrierSync", q.label)
	}
	if err := q.syncRun(context.Background(), true, fn, nil); err != nil {
		panic(fmt.Sprintf("%v (use BarrierAsync)", err))
	}
}

// BarrierSyncContext is BarrierSync with a context, as SyncContext is Sync's: if ctx ends
// before fn starts (while it waits for the blocks before it), fn never runs and ctx's error
// is returned. It returns ErrClosed on a closed queue and an error wrapping ErrWouldDeadlock
// where BarrierSync would panic.
func (q *Queue) BarrierSyncContext(ctx context.Context, fn func(context.Context)) error {
	if fn == nil {
		nilFunc("BarrierSyncContext", q.label)
	}
	return q.syncRun(ctx, true, nil, fn)
}

// IsCurrent reports whether the caller is running on q: inside a block of q or of a queue
// that targets q (at any depth), or inside a Sync onto one of them. For a Global root that
// means any queue whose target chain ends at it, whichever worker or goroutine runs the
// block (a drain that an override moved to a higher root's workers is still its own root's).
func (q *Queue) IsCurrent() bool {
	me := goid.G()
	if q.kind == rootKind {
		return exec.runningOn(me, q) || syncingOn(me, q)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.holdsLocked(me)
}

// syncRun acquires every queue from q up to (not including) its root, runs fn or cfn on the
// calling goroutine, and releases them. It has no defer (the paths that need some are
// functions of their own): a function with defers and several returns pays for a deferred
// call chain walked at run time on every return, and this is every Sync's way in.
func (q *Queue) syncRun(ctx context.Context, barrier bool, fn func(), cfn func(context.Context)) error {
	if q.kind == rootKind {
		return q.syncRoot(ctx, fn, cfn)
	}
	if q.Closed() {
		return fmt.Errorf("queue: Sync on %q: %w", q.label, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	me := goid.G()
	if q.kind == serialKind && !barrier {
		// An idle queue: taken with one CAS, given back with another if nothing was queued
		// meanwhile. It stays idle while inactive (stopped), so its target is settled.
		// Held by another Sync caller that took it so: spin briefly, it is about to finish.
		if mine := holdBusy | holdFast | uint64(me)<<holdShift; uint64(me) < 1<<(64-holdShift) &&
			(q.takeIdleSync(mine) || q.spinForSync(mine)) {
			t := q.target.Load()
			if t.kind == rootKind {
				return q.syncSerial(ctx, me, t, fn, cfn)
			}
			if t.kind == concurrentKind {
				if root := t.takeSyncSlot(me); root != nil {
					return q.syncSlot(ctx, me, t, root, fn, cfn)
				}
			}
			q.releaseSerialSync(me) // a chain to acquire: the general path below
		}
		// The common case, a serial queue on a root, planned and acquired under one lock:
		// the plan would find the caller holding q (a deadlock) or nothing to hold but q.
		q.mu.Lock()
		if q.ownerLocked() == me {
			q.mu.Unlock()
			return fmt.Errorf("%w: Sync on %q from a block running on %q", ErrWouldDeadlock, q.label, q.label)
		}
		if t := q.target.Load(); t.kind == rootKind && q.takeLocked(me, false) {
			q.mu.Unlock()
			return q.syncSerial(ctx, me, t, fn, cfn)
		}
		q.mu.Unlock()
	}
	return q.syncChain(ctx, me, barrier, fn, cfn)
}

// syncRoot is a Sync onto a Global root: fn runs at once on the caller's goroutine.
func (q *Queue) syncRoot(ctx context.Context, fn func(), cfn func(context.Context)) error {
	defer leaveSync(enterSync(goid.G(), q))
	if q.debug&noProfileLabels == 0 {
		q.setLabels()
		defer restoreLabels(nil, ctx)
	}
	return q.syncCall(ctx, fn, cfn)
}

// syncSerial runs a Sync block for a caller that holds q, a serial queue whose target is
// root, and gives q back. The caller took q without waiting in line (at most a short spin),
// just after it looked at ctx: fn starts without looking again.
func (q *Queue) syncSerial(ctx context.Context, me uintptr, root *Queue, fn func(), cfn func(context.Context)) error {
	if cfn == nil && q.plainSync() {
		q.syncPlain(me, root, fn)
		return nil
	}
	defer q.releaseSerialSync(me)
	return q.syncRunHeld(ctx, me, root, fn, cfn)
}

// takeSyncSlot is the short way of a Sync onto a serial queue that the caller took with
// the hold word's CAS and whose target is q, a concurrent queue: it gives the caller a slot
// of q at once, under q's lock, and returns q's target, when that is a root and the slot is
// free (takeLocked: q runnable, nothing queued, no barrier, width not reached) and the
// caller holds no part of q already (a block or Sync of q's, or of a queue under it: the
// general path runs the Sync in that slot, or reports a deadlock). Else it takes nothing
// and returns nil: the general path decides. q keeps its target while a slot is held
// (SetTarget wants it inactive and idle).
func (q *Queue) takeSyncSlot(me uintptr) *Queue {
	q.mu.Lock()
	if q.holdsLocked(me) || !q.takeLocked(me, false) {
		q.mu.Unlock()
		return nil
	}
	q.mu.Unlock()
	if root := q.target.Load(); root.kind == rootKind {
		return root
	}
	q.releaseSync(me) // a longer chain: the general path
	return nil
}

// syncSlot runs a Sync block for a caller that holds q (a serial queue, with the hold
// word's CAS) and a slot of its target t, a concurrent queue on root (takeSyncSlot), and
// gives them back, the slot first (as releaseChain does). The chain being q and t, that is
// all syncChain would have acquired, without planning it, q's lock, or a slot of
// syncTable (the caller's stack marks it: syncRunHeld).
func (q *Queue) syncSlot(ctx context.Context, me uintptr, t, root *Queue, fn func(), cfn func(context.Context)) error {
	defer q.releaseSerialSync(me)
	defer t.releaseSync(me)
	return q.syncRunHeld(ctx, me, root, fn, cfn)
}

// plainSync reports whether a Sync block on q needs nothing of syncRunHeld's beyond what
// syncPlain does: no observer on q, and no queue-specific values in the program.
func (q *Queue) plainSync() bool {
	return (!observing || q.cfg == nil || q.cfg.obs == nil) && !specificsUsed.Load()
}

// syncPlain is syncRunHeld for the common Sync: a plain func, no observer, no specifics,
// the target a root. Its one defer does what syncRunHeld's three and syncSerial's do, in the
// same order: a Sync used as a lock pays for each deferred call, and for each call (the label
// switch and the deferred func are written out here).
//
// Its IsCurrent mark is the caller's stack: fn runs called by the root's onRoot function
// (syncers.go), which IsCurrent on the root finds there. It takes no slot of syncTable.
func (q *Queue) syncPlain(me uintptr, root *Queue, fn func()) {
	labels := q.debug&noProfileLabels == 0
	if labels {
		// setLabels
		c := labelCache[q.lslot].Load()
		if c == nil || c.label != q.label {
			c = fillLabelSlot(q.lslot, q.label)
		}
		pprof.SetGoroutineLabels(c.set)
	}
	defer func() {
		if labels {
			pprof.SetGoroutineLabels(context.Background()) // restoreLabels for Sync's ctx: no labels
		}
		q.releaseSerialSync(me)
	}()
	// fn, called from root's onRoot function: a switch of direct calls, so that the
	// compiler sees that fn does not escape, written out here as the rest is.
	switch root.qos.Load() {
	case 0:
		onRoot0(fn)
	case 1:
		onRoot1(fn)
	case 2:
		onRoot2(fn)
	case 3:
		onRoot3(fn)
	default:
		onRoot4(fn)
	}
}

// syncChain is the general Sync: it plans the chain of queues from q to the first one it need
// not hold (a root, or a concurrent queue whose slot the caller holds), acquires them in
// order, runs the block and releases them.
func (q *Queue) syncChain(ctx context.Context, me uintptr, barrier bool, fn func(), cfn func(context.Context)) error {
	var planned, held [8]*Queue
	stop, path, err := q.syncPlan(q, me, barrier, planned[:0])
	if err != nil {
		return err
	}
	chain := held[:0]
	release := func() { releaseChain(chain, me) }
	only := onlySlot(stop)
	for i := 0; i < len(path); i++ {
		x := path[i]
		if err := x.acquireSync(ctx, me, x == q && barrier, q, only); err != nil {
			release()
			return err
		}
		chain = append(chain, x)
		// Held now, x keeps its target; SetTarget may have changed it since the plan (while
		// x was inactive): plan the rest of the chain again.
		next := x.target.Load()
		if i+1 < len(path) && next != path[i+1] || i+1 == len(path) && next != stop {
			if stop, path, err = q.syncPlan(next, me, false, path[:i+1]); err != nil {
				release()
				return err
			}
			only = onlySlot(stop)
		}
	}
	return q.syncHeld(ctx, me, stop, chain, fn, cfn)
}

// syncHeld runs a Sync block once the caller holds chain (q up to stop), and releases it.
// It is apart from syncRun, with one return, so that the compiler open-codes its defers:
// an uncontended Sync paid for a deferred call chain built and walked at run time.
func (q *Queue) syncHeld(ctx context.Context, me uintptr, stop *Queue, chain []*Queue, fn func(), cfn func(context.Context)) error {
	defer releaseChain(chain, me)
	err := ctx.Err() // ctx ended before fn started: fn never runs
	if err == nil {
		err = q.syncRunHeld(ctx, me, stop, fn, cfn)
	}
	return err
}

func (q *Queue) syncRunHeld(ctx context.Context, me uintptr, stop *Queue, fn func(), cfn func(context.Context)) error {
	prev, had, on := enterRunning(q, me)
	defer leaveRunning(me, prev, had, on)
	// A caller that took q, on a root, with the hold word's CAS marks its stack as syncPlain
	// does; others take a slot of syncTable.
	h := q.hold.Load()
	stacked := stop.kind == rootKind && h&holdFast != 0 && uintptr(h>>holdShift) == me
	if !stacked {
		defer leaveSync(enterSync(me, q))
	}
	if q.debug&noProfileLabels == 0 {
		q.setLabels()
		defer restoreLabels(stop, ctx)
	}
	if stacked {
		var err error
		runOnRoot(stop, func() { err = q.syncCall(ctx, fn, cfn) })
		return err
	}
	return q.syncCall(ctx, fn, cfn)
}

// releaseChain gives back the queues a Sync acquired, the last acquired first.
func releaseChain(chain []*Queue, me uintptr) {
	for i := len(chain) - 1; i >= 0; i-- {
		chain[i].releaseSync(me)
	}
}

// syncCall runs a Sync block on the calling goroutine, telling the observer.
func (q *Queue) syncCall(ctx context.Context, fn func(), cfn func(context.Context)) error {
	obs := Observer(nil)
	if observing && q.cfg != nil {
		obs = q.cfg.obs
	}
	if obs == nil && cfn == nil {
		fn()
		return nil
	}
	var info BlockInfo
	if obs != nil {
		if cfn == nil {
			// Sync and BarrierSync carry the caller's block context on, as Async does, so a
			// Sync made inside a traced block stays in its trace.
			ctx = CurrentContext()
		}
		info.Kind, info.Enqueued = BlockSync, now()
		ctx = obs.Enqueued(q, ctx, BlockSync)
		start := now()
		info.Wait = start.Sub(info.Enqueued)
		ctx = obs.Started(q, ctx, info)
		returned := false
		defer func() {
			info.Run = now().Sub(start)
			if !returned {
				info.Panic = recover()
			}
			obs.Finished(q, ctx, info)
			if info.Panic != nil {
				panic(info.Panic)
			}
		}()
		defer swapCurrent(ctx).restore()
		call(ctx, fn, cfn)
		returned = true
		return nil
	}
	defer swapCurrent(ctx).restore()
	call(ctx, fn, cfn)
	return nil
}

func call(ctx context.Context, fn func(), cfn func(context.Context)) {
	if cfn != nil {
		cfn(ctx)
	} else {
		fn()
	}
}

// acquireSync makes the queue the caller's (excl) or gives it a slot of it, waiting behind the
// blocks submitted before. If it would have to wait and only is not nil (a queue up the chain
// whose only slot the caller holds), it returns ErrWouldDeadlock instead: from is the queue
// the Sync is onto, for the message.
func (q *Queue) acquireSync(ctx context.Context, me uintptr, barrier bool, from, only *Queue) error {
	excl := q.kind == serialKind || barrier
	q.mu.Lock()
	if q.takeLocked(me, barrier) {
		q.mu.Unlock()
		return nil
	}
	// Busy with nothing queued: its holder is running a block now, often a short one (a Sync
	// used as a lock). Look again a few times, letting other goroutines run, before paying
	// for a waiter and a park. Only while nothing is queued: a spinner never passes a block
	// or a Sync caller that came before it.
	for i := 0; only == nil && i < syncSpins && q.items.n == 0 && q.runnableLocked() && q.flags.Load()&flagClosed == 0; i++ {
		q.mu.Unlock()
		runtime.Gosched()
		q.mu.Lock()
		if q.takeLocked(me, barrier) {
			q.mu.Unlock()
			return nil
		}
	}
	if only != nil {
		q.mu.Unlock()
		return fmt.Errorf("%w: Sync on %q would wait for %q, which needs a slot of %q to run, and the caller holds its only one",
			ErrWouldDeadlock, from.label, q.label, only.label)
	}
	// Busy: wait in line. The drainer that reaches us hands us the queue or a slot.
	w := &syncWaiter{g: me, excl: excl, ch: make(chan struct{})}
	q.items.pushBack(item{x: &ext{kind: BlockSync, waiter: w}})
	n := q.wakeLocked()
	q.mu.Unlock()
	q.startDrainers(n)

	end, err := beginWait(me, q, syncSite())
	if err != nil {
		q.giveUp(w, me)
		return err
	}
	defer end()
	if o := exec.boost(q, callerQoS(me)); o != nil {
		defer exec.unboost(o)
	}
	p := exec.blockEnter(me)
	select {
	case <-w.ch:
	case <-ctx.Done():
		err = ctx.Err()
		q.giveUp(w, me)
	}
	if p != nil {
		exec.blockExit(p)
	}
	return err
}

// handToWaiterLocked gives a free serial queue straight to the Sync caller first in line, if
// its first pending item is one, and unlocks: the caller runs at once, where a drainer would
// first have to be scheduled on a worker only to hand the queue over. It reports whether it
// did; if not, q.mu is still held.
func (q *Queue) handToWaiterLocked() bool {
	for q.items.n > 0 {
		w := q.items.peek().waiter()
		if w == nil {
			return false
		}
		q.items.popFront()
		if w.claim() {
			q.owner = w.g // the queue stays busy: the caller's now
			q.mu.Unlock()
			w.wake()
			return true
		}
		// That caller gave up: look at the next item.
	}
	return false
}

// spinForSync is a Sync caller's short active spin for a serial queue that another Sync
// caller holds without the lock, with nothing queued: such a holder runs a Sync block now,
// often a short one (a Sync used as a lock), and gives the queue back with one CAS. The
// caller looks at the hold word up to syncActiveSpins times and takes the queue with its own
// CAS once it reads 0; it reports whether it did. It never passes a queued block or Sync
// caller: those mark the word (holdQueued, or a drainer's busy), which ends the spin, as does
// a Suspend or Close. With one P the holder could not run meanwhile: no spin at all.
func (q *Queue) spinForSync(mine uint64) bool {
	if exec.procs() < 2 {
		return false
	}
	for range syncActiveSpins {
		switch h := q.hold.Load(); {
		case idleWord(h):
			if q.hold.CompareAndSwap(h, h|mine) {
				return true
			}
		case h&(holdFast|holdQueued|holdStopped|holdClosed) != holdFast || h>>holdShift == mine>>holdShift:
			return false // not a Sync caller's (nor the caller's own: a deadlock), or something waits
		}
		if f := syncSpinHook.Load(); f != nil {
			(*f)()
		}
	}
	return false
}

// syncActiveSpins bounds spinForSync: about as long as a short Sync block holds the queue.
const syncActiveSpins = 100

// syncSpinHook, when set (by tests), is called at each turn of spinForSync.
var syncSpinHook atomic.Pointer[func()]

// syncSpins is how many times a Sync caller that finds its queue busy, with nothing queued,
// yields and looks again before it waits in line (parks).
const syncSpins = 4

// takeLocked gives goroutine me the queue (or a slot of it) at once if it is free and nothing
// is queued ahead; it reports whether it did. q.mu is held.
func (q *Queue) takeLocked(me uintptr, barrier bool) bool {
	if q.items.n != 0 || !q.runnableLocked() {
		return false
	}
	switch {
	case q.kind == serialKind && q.takeIdle(holdBusy):
		q.owner = me
		return true
	case q.kind == concurrentKind && barrier && q.active == 0 && q.inflight == 0:
		q.active, q.inflight, q.excl, q.owner = 1, 1, true, me
		return true
	case q.kind == concurrentKind && !barrier && !q.excl && q.active < q.effWidth():
		q.active++
		q.inflight++
		q.addHolderLocked(me)
		return true
	}
	return false
}

// giveUp withdraws a waiting Sync: the drainer will skip its entry, or, if the queue was
// handed to it meanwhile, it gives the queue straight back.
func (q *Queue) giveUp(w *syncWaiter, me uintptr) {
	if w.state.CompareAndSwap(waiting, gaveUp) {
		return
	}
	<-w.ch
	q.releaseSync(me)
}

// syncSite is the call site of the Sync that is waiting, for deadlock reports; it is looked
// up only while detection is on.
func syncSite() string {
	detectMu.Lock()
	on := detectOn
	detectMu.Unlock()
	if !on {
		return ""
	}
	for skip := 3; skip < 12; skip++ {
		s := callSite(skip)
		if s == "" || !strings.Contains(s, "/queue/sync.go") {
			return s
		}
	}
	return ""
}

// releaseSync gives back what acquireSync took and restarts the queue's drainers.
func (q *Queue) releaseSync(me uintptr) {
	if q.kind == serialKind {
		q.releaseSerialSync(me)
		return
	}
	q.mu.Lock()
	switch {
	case q.excl && q.owner == me:
		q.excl, q.owner = false, 0
		q.inflight--
		q.active--
	default:
		q.removeHolderLocked(me)
		q.inflight--
		q.active--
	}
	n := q.wantLocked()
	q.active += n
	q.mu.Unlock()
	q.startDrainers(n)
}

// releaseSerialSync gives back a serial queue a Sync caller held: with one CAS if it took
// the queue without the lock and nothing was queued since; else under the lock, to the Sync
// caller first in line, or to a new drainer if blocks wait.
func (q *Queue) releaseSerialSync(me uintptr) {
	mine := holdBusy | holdFast | uint64(me)<<holdShift
	if q.hold.CompareAndSwap(mine, 0) {
		return // a word without a lone count (see takeIdleSync)
	}
	if h := q.hold.Load(); h&^holdCount == mine && q.hold.CompareAndSwap(h, h&holdCount) {
		return
	}
	q.mu.Lock()
	if h := q.hold.Load(); h&holdFast != 0 {
		// Held without the lock, and blocks came (or a Suspend): a holder like any other now.
		// Nothing else changes the word while it is not 0 and the lock is held.
		q.hold.Store(h & (holdBusy | holdStopped | holdClosed | holdCount))
	}
	q.owner = 0
	if q.runnableLocked() && q.handToWaiterLocked() {
		return
	}
	start := q.serialReleaseLocked()
	q.mu.Unlock()
	if start {
		q.startDrainers(1)
	}
}
