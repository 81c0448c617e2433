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

// While specifics are used, every goroutine running a queue's blocks records the innermost
// such queue: a worker in its own worker.running (no lock: only its goroutine reads or writes
// it), any other goroutine (a Sync caller) in a map shard keyed by the goroutine. Neither
// allocates per drain or per Sync, as a sync.Map keyed by a boxed goroutine did.
type runningShard struct {
	mu sync.Mutex
	m  map[uintptr]*Queue
	_  [48]byte // a cache line each: Sync callers of different shards do not share one
}

var runningShards [64]runningShard

func runningShardOf(g uintptr) *runningShard {
	return &runningShards[(uint64(g)*0x9E3779B97F4A7C15)>>58]
}

// runningOf returns the innermost queue goroutine g runs the blocks of, or nil.
func runningOf(g uintptr) *Queue {
	if w := workerOf(g); w != nil {
		return w.running
	}
	s := runningShardOf(g)
	s.mu.Lock()
	q := s.m[g]
	s.mu.Unlock()
	return q
}

// setRunning records q (nil: none) as the innermost queue goroutine g runs and returns the
// one it replaces.
func setRunning(g uintptr, q *Queue) (prev *Queue) {
	if w := workerOf(g); w != nil {
		prev, w.running = w.running, q
		return prev
	}
	s := runningShardOf(g)
	s.mu.Lock()
	prev = s.m[g]
	switch {
	case q == nil:
		delete(s.m, g)
	case s.m == nil:
		s.m = map[uintptr]*Queue{g: q}
	default:
		s.m[g] = q
	}
	s.mu.Unlock()
	return prev
}

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
	for q := runningOf(goid.G()); q != nil; q = q.target.Load() {
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
	if p := setRunning(g, q); p != nil {
		return p, true, true
	}
	return nil, false, true
}

func leaveRunning(g uintptr, prev any, had, on bool) {
	if !on {
		return
	}
	var p *Queue
	if had {
		p = prev.(*Queue)
	}
	setRunning(g, p)
}
