package queue

import (
	"context"
	"fmt"
	"unsafe"
)

// Guarded is a value owned by its own serial queue: every access runs as a block of that
// queue, so accesses never overlap and each sees the ones before it, with no mutex. The
// pointer a callback gets is valid only during the callback: do not keep it. A Guarded must
// not be copied (a copy's value would be guarded by nobody): go vet's copylocks check says so.
type Guarded[T any] struct {
	noCopy noCopy
	q      *Queue
	// x is shared by every Async item of the value: its call runs the item's fn, stored as
	// a func(), on &v. So an Async costs no closure: the item holds the caller's func as is.
	x ext
	v T
}

// noCopy makes go vet's copylocks check report copies of the struct holding it, as in sync.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// NewGuarded returns v guarded by a new serial queue (label "guarded" unless WithLabel is
// given; the other options are those of NewSerial).
func NewGuarded[T any](v T, opts ...Option) *Guarded[T] {
	g := &Guarded[T]{q: NewSerial("guarded", opts...), v: v}
	g.x = ext{kind: BlockAsync, call: func(fn func()) { asGuardedFunc[T](fn)(&g.v) }}
	return g
}

// Async runs fn with the value on the value's queue and returns at once. It makes no
// closure: given a func that exists already, it allocates no more than Queue.Async does.
func (g *Guarded[T]) Async(fn func(*T)) {
	q := g.q
	if fn == nil {
		nilFunc("Async", q.label)
	}
	// fn travels in the item's func() field; only g.x.call turns it back into a func(*T).
	// (A copy: taking fn's own address would move it to the heap, as the closure below
	// captures it.)
	f := fn
	it := item{fn: *(*func())(unsafe.Pointer(&f)), x: &g.x}
	if q.plain && q.submitPlain(it) { // most values: straight to the short path, as Queue.Async
		return
	}
	if q.debug&recordCallSites != 0 || observing && q.cfg != nil && q.cfg.obs != nil {
		// The item's ext is its own there (a call site, the observer's context): wrap.
		q.Async(func() { fn(&g.v) })
		return
	}
	if err := q.submit(context.Background(), it, BlockAsync, waitForRoom); err != nil {
		panic(fmt.Sprintf("queue: Async on %q: %v (submit before Close, or use TryAsync)", q.label, err))
	}
}

// asGuardedFunc turns an item's fn back into the func(*T) that Guarded.Async stored there.
// Both are one pointer to the same closure: only the static type changes, never the call.
func asGuardedFunc[T any](fn func()) func(*T) {
	return *(*func(*T))(unsafe.Pointer(&fn))
}

// Sync runs fn with the value on the value's queue and returns when it has.
func (g *Guarded[T]) Sync(fn func(*T)) {
	g.q.Sync(func() { fn(&g.v) })
}

// Queue returns the serial queue that owns the value (to Close it, or target others at it).
func (g *Guarded[T]) Queue() *Queue { return g.q }
