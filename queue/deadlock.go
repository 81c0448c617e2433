package queue

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
		held := x.owner == me || (x.holdsLocked(me) && x.effWidth() == 1)
		x.mu.Unlock()
		if held {
			return true
		}
	}
	return false
}
