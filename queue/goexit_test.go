package queue

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A block that ends with runtime.Goexit (what t.FailNow and require.* do) is treated like a
// panicking one: its queue goes on with the next block, Close returns, the executor replaces
// the worker, and the dead goroutine is no longer taken for a worker. At GOMAXPROCS=1 with
// no worker lent, a worker that was lost for good would leave the later blocks waiting.
func TestABlockThatCallsGoexitDoesNotWedgeItsQueueOrEatAWorker(t *testing.T) {
	for _, procs := range []int{1, 2} {
		for _, tc := range goexitCases {
			t.Run(fmt.Sprintf("%s/GOMAXPROCS=%d", tc.name, procs), func(t *testing.T) {
				goexitCase(t, procs, tc.make)
			})
		}
	}
}

var goexitCases = []struct {
	name string
	make func() (q *Queue, sub *Queue) // sub: where the blocks go
}{
	{"serial", func() (*Queue, *Queue) { q := NewSerial("s"); return q, q }},
	{"concurrent", func() (*Queue, *Queue) { q := NewConcurrent("c", WithWidth(2)); return q, q }},
	{"serial under a serial target", func() (*Queue, *Queue) {
		top := NewSerial("top")
		return top, NewSerial("child", WithTarget(top))
	}},
	{"concurrent under a serial target", func() (*Queue, *Queue) {
		top := NewSerial("top")
		return top, NewConcurrent("child", WithTarget(top))
	}},
	{"with an observer and a panic handler", func() (*Queue, *Queue) {
		q := NewSerial("observed", WithObserver(&recorder{}), WithPanicHandler(func(any, []byte) {}))
		return q, q
	}},
	{"a Global root", func() (*Queue, *Queue) { return nil, Global(Utility) }},
}

func goexitCase(t *testing.T, procs int, queues func() (q *Queue, sub *Queue)) {
	withProcs(t, procs)
	scarceWorkers(t)
	top, q := queues()
	dead := make(chan uintptr, 1)
	exited := make(chan struct{})
	q.Async(func() {
		defer close(exited)
		dead <- goid.G()
		runtime.Goexit()
	})
	testutil.Recv(t, exited, "the block that calls Goexit")
	deadG := <-dead
	for range 3 { // each Goexit loses the worker it ran on
		q.Async(runtime.Goexit)
	}
	type seen struct{ me, listed []uintptr }
	after := make(chan seen, 1)
	q.Async(func() {
		exec.mu.Lock()
		var s seen
		s.me = []uintptr{goid.G()}
		for _, w := range exec.list {
			s.listed = append(s.listed, w.g)
		}
		exec.mu.Unlock()
		after <- s
	})
	s := testutil.Recv(t, after, "a block after the Goexits")
	// The workers listed are live ones, this block's among them: the goroutines that
	// exited left the list (one of them may have handed its identity on to a new one).
	require.Subset(t, s.listed, s.me)
	require.LessOrEqual(t, len(s.listed), procs, "workers listed with none lent (the first exited as %#x)", deadG)

	other := make(chan struct{})
	NewSerial("other").Async(func() { close(other) })
	testutil.Recv(t, other, "a block of another queue")
	if top != nil {
		require.NoError(t, closeWithin(top), "Close of a queue whose block called Goexit")
		if q != top {
			require.NoError(t, closeWithin(q))
		}
		require.EqualValues(t, 5, q.Stats().Executed, "blocks ended by Goexit count as executed")
	} else {
		syncDone(t, q)
	}
	// With the work done the pool goes idle: its last worker and its monitor exit (a
	// worker lost for good kept the monitor ticking forever).
	require.Eventually(t, func() bool {
		exec.mu.Lock()
		defer exec.mu.Unlock()
		return exec.main.workers.Load() == 0 && exec.main.idle == nil
	}, waitTimeout, time.Millisecond, "the pool to go idle")
}

// A Goexit inside a Sync block gives back the queues the Sync held (the caller's goroutine
// ends, as Goexit says), and the block that called Sync is repaired like any other.
func TestGoexitInsideASyncFromABlockReleasesBothQueues(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	outer, inner := NewSerial("outer"), NewSerial("inner")
	outer.Async(func() { inner.Sync(runtime.Goexit) })
	ran := make(chan struct{})
	outer.Async(func() { inner.Sync(func() { close(ran) }) })
	testutil.Recv(t, ran, "a Sync onto inner from outer's next block")
	require.NoError(t, closeWithin(outer))
	require.NoError(t, closeWithin(inner))
	require.EqualValues(t, 2, outer.Stats().Executed)
}

// closeWithin closes q, failing after the tests' bound.
func closeWithin(q *Queue) error {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Wait)
	defer cancel()
	return q.Close(ctx)
}

// The Observer sees a block that ended with Goexit finish, with ErrGoexit as its panic; the
// panic handler is not called (a Goexit is no panic: a goroutine that calls it does not
// crash the program either).
func TestObserverSeesGoexitAndThePanicHandlerDoesNot(t *testing.T) {
	r := &recorder{}
	var handled atomic.Int32
	q := NewSerial("observed", WithObserver(r), WithPanicHandler(func(any, []byte) { handled.Add(1) }))
	q.Async(runtime.Goexit)
	syncDone(t, q)
	require.Zero(t, handled.Load())
	r.mu.Lock()
	defer r.mu.Unlock()
	var panics []any
	for _, b := range r.infos {
		panics = append(panics, b.Panic)
	}
	require.Contains(t, panics, any(ErrGoexit))
}
