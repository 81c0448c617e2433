package queue

// Guarded is a value owned by its own serial queue: every access runs as a block of that
// queue, so accesses never overlap and each sees the ones before it, with no mutex. The
// pointer a callback gets is valid only during the callback: do not keep it. A Guarded must
// not be copied (a copy's value would be guarded by nobody): go vet's copylocks check says so.
type Guarded[T any] struct {
	noCopy noCopy
	q      *Queue
	v      T
}

// noCopy makes go vet's copylocks check report copies of the struct holding it, as in sync.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// NewGuarded returns v guarded by a new serial queue (label "guarded" unless WithLabel is
// given; the other options are those of NewSerial).
func NewGuarded[T any](v T, opts ...Option) *Guarded[T] {
	return &Guarded[T]{q: NewSerial("guarded", opts...), v: v}
}

// Async runs fn with the value on the value's queue and returns at once.
func (g *Guarded[T]) Async(fn func(*T)) {
	g.q.Async(func() { fn(&g.v) })
}

// Sync runs fn with the value on the value's queue and returns when it has.
func (g *Guarded[T]) Sync(fn func(*T)) {
	g.q.Sync(func() { fn(&g.v) })
}

// Queue returns the serial queue that owns the value (to Close it, or target others at it).
func (g *Guarded[T]) Queue() *Queue { return g.q }
