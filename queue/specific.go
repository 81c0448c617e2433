package queue

import (
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/internal/goid"
)

// A Key names a typed value set on queues with SetSpecific (GCD's queue-specific data). Keys
// are compared by identity: make one with NewKey and keep it in a package variable.
type Key[T any] struct{ name string }

// NewKey returns a new key; name is for debugging only.
func NewKey[T any](name string) *Key[T] { return &Key[T]{name: name} }

// String returns the key's name.
func (k *Key[T]) String() string { return k.name }

// specificsUsed turns on the bookkeeping CurrentSpecific needs; until the first SetSpecific,
// running a block pays one atomic load for it.
var specificsUsed atomic.Bool

// running maps a goroutine to the innermost queue whose drain it runs, while specifics are used.
var running sync.Map // goroutine -> *Queue

// SetSpecific sets the value of k on q (dispatch_queue_set_specific).
// The value lives in the queue itself, so it goes away with the queue.
func SetSpecific[T any](q *Queue, k *Key[T], v T) {
	specificsUsed.Store(true)
	q.mu.Lock()
	x := q.extLocked()
	if x.specific == nil {
		x.specific = map[any]any{}
	}
	x.specific[k] = v
	q.mu.Unlock()
}

// GetSpecific returns the value of k set on q itself (dispatch_queue_get_specific).
func GetSpecific[T any](q *Queue, k *Key[T]) (T, bool) {
	var zero T
	q.mu.Lock()
	var v any
	ok := false
	if q.ext != nil {
		v, ok = q.ext.specific[k]
	}
	q.mu.Unlock()
	if !ok {
		return zero, false
	}
	return v.(T), true
}

// CurrentSpecific looks k up from inside a block (dispatch_get_specific): on the queue the
// caller is running on, then on its target, and so on up the chain. Outside any queue, or
// when no queue of the chain has it, it reports false.
func CurrentSpecific[T any](k *Key[T]) (T, bool) {
	var zero T
	cur, ok := running.Load(goid.G())
	if !ok {
		return zero, false
	}
	for q := cur.(*Queue); q != nil; q = q.target.Load() {
		if v, ok := GetSpecific(q, k); ok {
			return v, true
		}
		if q.kind == rootKind {
			break
		}
	}
	return zero, false
}

// enterRunning records that goroutine g runs q's blocks now and returns what undoes it; it
// costs one atomic load while no queue has specifics.
func enterRunning(q *Queue, g uintptr) (prev any, had, on bool) {
	if !specificsUsed.Load() {
		return nil, false, false
	}
	prev, had = running.Swap(g, q)
	return prev, had, true
}

func leaveRunning(g uintptr, prev any, had, on bool) {
	if !on {
		return
	}
	if had {
		running.Store(g, prev)
	} else {
		running.Delete(g)
	}
}
