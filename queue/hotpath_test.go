package queue

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// The deque against a slice, through every transition between its inline item and its
// chunks, for a queue's deque and for a root's (keep), with items of every kind a slot holds
// (a plain func, a child's drain, an ext, a func with an ext as a Guarded's).
func TestADequeKeepsItsOrderThroughItsInlineItemAndItsChunks(t *testing.T) {
	for _, keep := range []bool{false, true} {
		r := rand.New(rand.NewPCG(1, 2))
		d := deque{keep: keep}
		var model []item
		mk := func() item {
			switch r.IntN(4) {
			case 0:
				n := r.Int() // a closure of its own, told apart by its pointer
				return item{fn: func() { _ = n }}
			case 1:
				return item{child: &Queue{}}
			case 2:
				return item{x: &ext{}}
			default:
				n := r.Int()
				return item{fn: func() { _ = n }, x: &ext{}}
			}
		}
		same := func(a, b item) bool {
			return funcPtr(a.fn) == funcPtr(b.fn) && a.child == b.child && a.x == b.x
		}
		for step := range 20_000 {
			switch op := r.IntN(10); {
			case op < 4 || len(model) == 0 && op < 8:
				it := mk()
				d.pushBack(it)
				model = append(model, it)
			case op < 7:
				if !same(d.peek(), model[0]) || !same(d.popFront(), model[0]) {
					t.Fatalf("keep=%v step %d: popFront out of order", keep, step)
				}
				model = model[1:]
			case op < 8:
				if !same(d.popBack(), model[len(model)-1]) {
					t.Fatalf("keep=%v step %d: popBack out of order", keep, step)
				}
				model = model[:len(model)-1]
			default:
				it := mk()
				d.pushFrontOne(it)
				model = slices.Insert(model, 0, it)
			}
			if int(d.n) != len(model) {
				t.Fatalf("keep=%v step %d: n = %d, want %d", keep, step, d.n, len(model))
			}
			if !keep && d.head == nil && !same(d.one, item{}) != (len(model) == 1) {
				t.Fatalf("step %d: the inline item is wrong for %d items", step, len(model))
			}
			if len(model) == 0 && (!same(d.one, item{}) || !keep && d.head != nil) {
				t.Fatalf("keep=%v step %d: an empty deque holds an item or a chunk", keep, step)
			}
		}
		require.Empty(t, model[:0])
	}
}

// An emptied slot holds nothing: no pointer, no kind, no side entry (a recycled chunk keeps
// no block alive, and a plain block pushed into it later is read as one).
func TestADequeClearsTheSlotsItTakesFrom(t *testing.T) {
	var d deque
	fn := func() {}
	d.pushBack(item{fn: fn})
	d.pushBack(item{child: &Queue{}})
	d.pushBack(item{x: &ext{}})
	d.pushBack(item{fn: fn, x: &ext{}})
	c := d.head
	require.NotNil(t, c.xs)
	for d.n > 0 {
		d.popFront()
	}
	require.Equal(t, [chunkSize]unsafe.Pointer{}, c.slots)
	require.Zero(t, c.kinds)
	require.Equal(t, [chunkSize]*ext{}, *c.xs)
}

// tombstoneChild empties the one slot of the child it is asked for and leaves item{} there,
// which root workers skip; the items around it keep their order.
func TestATombstoneReplacesOneChildDrain(t *testing.T) {
	d := deque{keep: true}
	a, b := &Queue{}, &Queue{}
	d.pushBack(item{child: a})
	d.pushBack(item{child: b})
	d.pushBack(item{child: a})
	require.True(t, d.tombstoneChild(a))
	tomb := d.popFront()
	require.True(t, tomb.fn == nil && tomb.child == nil && tomb.x == nil, "a tombstone is item{}")
	require.Same(t, b, d.popFront().child)
	require.Same(t, a, d.popFront().child)
	require.False(t, d.tombstoneChild(a))
}

// A queue that goes idle after each block takes its next one without a chunk: the deque
// keeps a single item inline. A root keeps its chunk across its idle moments.
func TestAnIdleQueuesFirstBlockTakesNoChunk(t *testing.T) {
	var d deque
	d.pushBack(item{fn: func() {}})
	require.Nil(t, d.head, "one item needs no chunk")
	d.popFront()
	require.Equal(t, deque{}, d)

	q := NewSerial("idle-first", Inactive())
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	q.mu.Lock()
	require.Nil(t, q.items.head, "the first block of an idle queue took a chunk")
	require.EqualValues(t, 1, q.items.n)
	q.mu.Unlock()
	q.Activate()
	testutil.Recv(t, ran, "the block")
	syncDone(t, q)
	q.mu.Lock()
	require.Nil(t, q.items.head)
	require.Nil(t, q.batch.head)
	q.mu.Unlock()

	root := deque{keep: true}
	root.pushBack(item{fn: func() {}})
	c := root.head
	root.popFront()
	require.Same(t, c, root.head, "a root's deque keeps its chunk when it empties")
	root.pushBack(item{fn: func() {}})
	require.Same(t, c, root.head)
	exec.mu.Lock()
	for i := range exec.main.items {
		require.True(t, exec.main.items[i].keep)
	}
	exec.mu.Unlock()
}

// What submitters touch on every Async (the lock, the hold word, the pending list, the
// accepted count, what Async reads) ends at least 64 bytes before the first byte a serial
// queue's drainer touches for every block (the flags it checks, what runBlock reads, its
// batch, the finished count): then no cache line holds both, wherever the allocator put the
// queue (a 240-byte object lands at any multiple of 16). The queue stays in the 240-byte
// size class (the idle-queue bar is 256 bytes).
func TestSubmittersAndTheDrainerWriteSeparateCacheLines(t *testing.T) {
	var q Queue
	end := func(off, size uintptr) uintptr { return off + size - 1 } // last byte
	submitters := []uintptr{
		end(unsafe.Offsetof(q.mu), unsafe.Sizeof(q.mu)),
		end(unsafe.Offsetof(q.hold), unsafe.Sizeof(q.hold)),
		end(unsafe.Offsetof(q.items), unsafe.Sizeof(q.items)),
		end(unsafe.Offsetof(q.acc), unsafe.Sizeof(q.acc)),
		end(unsafe.Offsetof(q.target), unsafe.Sizeof(q.target)),
		end(unsafe.Offsetof(q.kind), unsafe.Sizeof(q.kind)),
		end(unsafe.Offsetof(q.plain), unsafe.Sizeof(q.plain)),
	}
	drainer := []uintptr{
		unsafe.Offsetof(q.flags), unsafe.Offsetof(q.limit), unsafe.Offsetof(q.cfg),
		unsafe.Offsetof(q.batch), unsafe.Offsetof(q.done),
	}
	for _, s := range submitters {
		for _, d := range drainer {
			require.GreaterOrEqual(t, d, s+64, "a submitter's byte at %d, a drainer's at %d", s, d)
		}
	}
	// The hold word, read by every submission before it takes mu, is not on mu's line
	// either: reading it there would fetch the contended lock's line shared right before
	// the Lock's CAS needs it exclusive (LockGuardedAsync +20% with the two side by side).
	require.GreaterOrEqual(t, unsafe.Offsetof(q.hold), end(unsafe.Offsetof(q.mu), unsafe.Sizeof(q.mu))+64)
	require.LessOrEqual(t, unsafe.Sizeof(q), uintptr(240))
}

// runningAbove answers from one word, kept by the workers' class changes.
func TestRunningAboveFollowsTheWorkersClasses(t *testing.T) {
	e := newExecutor()
	e.mu.Lock()
	defer e.mu.Unlock()
	a, b := &worker{qos: -1}, &worker{qos: -1}
	require.False(t, e.runningAbove(Background))
	e.setWorkerQoS(a, Utility)
	e.setWorkerQoS(b, Utility)
	require.True(t, e.runningAbove(Background))
	require.False(t, e.runningAbove(Utility))
	e.setWorkerQoS(a, UserInteractive)
	require.True(t, e.runningAbove(Background))
	require.True(t, e.runningAbove(Utility))
	e.setWorkerQoS(b, -1)
	require.True(t, e.runningAbove(UserInitiated))
	require.False(t, e.runningAbove(UserInteractive))
	e.setWorkerQoS(a, Background)
	require.False(t, e.runningAbove(Background))
	e.setWorkerQoS(a, -1)
	require.Zero(t, e.classes.Load())
}

// A queue idle after every block (a connection answering one message at a time) takes each
// block, runs it and goes idle again without allocating: the block waits in the deque's
// inline slot, and neither the drain nor the hand-off to a worker allocates. An uncontended
// Sync allocates nothing either (with queue-specific values in use too: the next test).
func TestAnIdleQueuesFirstBlockAllocatesNothing(t *testing.T) {
	q := NewSerial("idle-allocs")
	ran := make(chan struct{}, 1)
	f := func() { ran <- struct{}{} }
	q.Async(f) // the first drain sets up the label cache and a worker
	testutil.Recv(t, ran, "the first block")
	timeout := time.NewTimer(testutil.Wait) // one bound for every round: a timer per round would allocate
	defer timeout.Stop()
	allocs := testing.AllocsPerRun(200, func() {
		q.Async(f)
		select {
		case <-ran:
		case <-timeout.C:
			panic("a block onto an idle queue did not run")
		}
	})
	require.Zero(t, allocs, "allocations per Async onto an idle queue")
	n := 0
	allocs = testing.AllocsPerRun(200, func() { q.Sync(func() { n++ }) })
	require.Zero(t, allocs, "allocations per Sync onto an idle queue")
	require.Equal(t, 201, n)
}

// Once a program uses queue-specific values, each drain and each Sync records the queue its
// goroutine runs (for CurrentSpecific) without allocating: in the worker for a drain, in a
// map shard for a Sync caller (a sync.Map keyed by the boxed goroutine allocated twice).
func TestDrainsAndSyncsRecordTheirQueueWithoutAllocatingOnceSpecificsAreUsed(t *testing.T) {
	defer specificsUsed.Store(specificsUsed.Load())
	k := NewKey[int]("depth")
	q := NewSerial("specific-allocs")
	SetSpecific(q, k, 7)
	got := make(chan int, 1)
	f := func() {
		v, _ := CurrentSpecific(k)
		got <- v
	}
	q.Async(f) // the first drain sets up the label cache and a worker
	require.Equal(t, 7, testutil.Recv(t, got, "the first block"))
	timeout := time.NewTimer(testutil.Wait)
	defer timeout.Stop()
	allocs := testing.AllocsPerRun(200, func() {
		q.Async(f)
		select {
		case v := <-got:
			if v != 7 {
				panic("CurrentSpecific inside a drain did not find the queue's value")
			}
		case <-timeout.C:
			panic("a block onto an idle queue did not run")
		}
	})
	require.Zero(t, allocs, "allocations per Async and drain with specifics in use")
	allocs = testing.AllocsPerRun(200, func() {
		q.Sync(f)
		if <-got != 7 {
			panic("CurrentSpecific inside a Sync did not find the queue's value")
		}
	})
	require.Zero(t, allocs, "allocations per Sync with specifics in use")
	_, ok := CurrentSpecific(k)
	require.False(t, ok, "the Sync caller still runs the queue once Sync returned")
}
