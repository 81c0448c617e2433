package queue

import "fmt"

// What a goroutine that runs blocks may wait for without waiting for itself. A goroutine
// holds the queues whose blocks it is running: a serial queue alone (its owner), a concurrent
// queue alone (a barrier) or in one of its slots (a holder), and every queue up the chain of
// the one it holds (a queue's drain is a block of its target). Sync and a full limited queue's
// Async consult these rules before they wait.

// roomNeedsCallerLocked reports whether the room a full limited queue q waits for can only
// come after goroutine me has finished: me runs a block of q (or of a queue targeting it), or
// holds a queue q's blocks need to start, alone or in the only slot there is. q.mu is held.
func (q *Queue) roomNeedsCallerLocked(me uintptr) bool {
	if q.holdsLocked(me) {
		return true
	}
	for x := q.target.Load(); x.kind != rootKind; x = x.target.Load() {
		x.mu.Lock()
		held := x.ownerLocked() == me || (x.holdsLocked(me) && x.effWidth() == 1)
		x.mu.Unlock()
		if held {
			return true
		}
	}
	return false
}

// syncPlan finds what a Sync onto q by goroutine me must acquire: the queues from `from` (q,
// or a queue up its chain) up to stop (not included), which it appends to path. stop is the
// first queue up the chain that me already holds, or the root.
//
//   - me holds it alone (a serial queue, or a concurrent one as a barrier): the Sync would
//     wait for the caller itself, ErrWouldDeadlock, as GCD's dispatch_sync onto the current
//     serial queue is a bug;
//   - me holds one of its slots: the Sync runs inside that slot, as GCD runs a dispatch_sync
//     from a block of the same concurrent queue at once, and so does a Sync onto a queue that
//     targets it (a sibling of the caller's queue): everything up from there is the caller's
//     already. Only a BarrierSync onto the concurrent queue itself is refused: it would wait
//     for the caller's own slot to end.
func (q *Queue) syncPlan(from *Queue, me uintptr, barrier bool, path []*Queue) (stop *Queue, _ []*Queue, err error) {
	x := from
	for ; x.kind != rootKind; x = x.target.Load() {
		x.mu.Lock()
		alone := x.ownerLocked() == me
		slot := !alone && x.holdsLocked(me)
		x.mu.Unlock()
		switch {
		case alone && x == q:
			return nil, path, fmt.Errorf("%w: Sync on %q from a block running on %q", ErrWouldDeadlock, q.label, q.label)
		case alone:
			return nil, path, fmt.Errorf("%w: Sync on %q needs %q (its target), which is running the caller", ErrWouldDeadlock, q.label, x.label)
		case slot && x == q && barrier:
			return nil, path, fmt.Errorf("%w: BarrierSync on %q from a block running on %q would wait for that block", ErrWouldDeadlock, q.label, q.label)
		case slot:
			return x, path, nil
		}
		path = append(path, x)
	}
	return x, path, nil
}

// onlySlot returns stop if the caller's slot of it is its only one: waiting for a queue below
// stop needs a new slot of stop, so that wait could never end. nil otherwise.
func onlySlot(stop *Queue) *Queue {
	if stop.kind != rootKind && stop.effWidth() == 1 {
		return stop
	}
	return nil
}

// blocker says what a Sync waiting for x waits for, for deadlock detection: the goroutine
// that holds x alone, or the only slot of it (holder), or, when nobody holds x, x's target,
// where its next drain waits (up). Neither when x is busy in a way that no one goroutine
// decides (slots of a wider queue) or x targets a root, whose workers the executor lends.
func (x *Queue) blocker() (holder uintptr, up *Queue) {
	x.mu.Lock()
	holder = x.ownerLocked()
	n := 0
	if x.ext != nil {
		n = len(x.ext.holders)
	}
	if holder == 0 && n == 1 && x.effWidth() == 1 {
		holder = x.ext.holders[0]
	}
	x.mu.Unlock()
	if holder == 0 && n == 0 {
		if t := x.target.Load(); t.kind != rootKind {
			return 0, t
		}
	}
	return holder, nil
}
