package queue

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A block running on a worker that submits to an idle plain serial queue of the same root
// hands the queue's drain to its own worker with the block in the same ring entry
// (executor.handFirst): the block is in neither the queue's batch nor its items until the
// drain takes it. These tests pin what the drain must do with it when the queue changed
// meanwhile, and that a taker moving the ring to the roots keeps it.

// handedFirst reports, from a worker's block right after x.Async, whether x's block went
// with its drain into the worker's ring and not into x's batch.
func handedFirst(x *Queue) bool {
	w := workerOf(goid.G())
	if w == nil || x.batch.n != 0 {
		return false
	}
	x1, ok := w.local.next()
	h, _ := ringIdx(x1)
	return ok && w.local.entries[h%localSize].q == x && w.local.entries[h%localSize].first != nil
}

func TestAnIdleQueuesBlockTravelsWithItsHandedDrain(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	a, x := NewSerial("a"), NewSerial("x")
	ran, handed := make(chan struct{}), make(chan bool, 1)
	a.Async(func() {
		x.Async(func() { close(ran) })
		handed <- handedFirst(x)
	})
	require.True(t, testutil.Recv(t, handed, "the submitting block"), "the block went to the batch")
	testutil.Recv(t, ran, "the handed block")
	syncDone(t, x)
	s := x.Stats()
	require.Equal(t, uint64(1), s.Executed)
	require.Zero(t, s.Pending)
}

// Blocks queued behind the handed one (under the lock: the word says so) run after it, in
// order: the drain puts the handed block in front of its batch and goes on as any other.
func TestBlocksQueuedBehindAHandedBlockRunAfterIt(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	a, x := NewSerial("a"), NewSerial("x")
	order := make(chan int, 3)
	handed := make(chan bool, 1)
	a.Async(func() {
		x.Async(func() { order <- 1 })
		handed <- handedFirst(x)
		x.Async(func() { order <- 2 })
		x.Async(func() { order <- 3 })
	})
	require.True(t, testutil.Recv(t, handed, "the submitting block"))
	for i := 1; i <= 3; i++ {
		require.Equal(t, i, testutil.Recv(t, order, "a block of x"))
	}
	syncDone(t, x)
	require.Equal(t, uint64(3), x.Stats().Executed)
}

// A queue suspended after its block was handed with its drain: the drain finds it stopped,
// keeps the block pending (not run, not lost) and gives the queue back; Resume runs it.
func TestAHandedBlockWaitsForResumeIfItsQueueWasSuspended(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	a, x, y := NewSerial("a"), NewSerial("x"), NewSerial("y")
	ran, probe := make(chan struct{}), make(chan struct{})
	handed := make(chan bool, 1)
	a.Async(func() {
		x.Async(func() { close(ran) })
		handed <- handedFirst(x)
		x.Suspend()
		// Handed after x's drain to the one worker, whose ring runs in order: when it runs,
		// x's drain has found x suspended.
		y.Async(func() { close(probe) })
	})
	require.True(t, testutil.Recv(t, handed, "the submitting block"))
	testutil.Recv(t, probe, "the block handed after x's drain")
	notYet(t, ran, "the suspended queue's block")
	s := x.Stats()
	require.Equal(t, 1, s.Pending)
	require.Zero(t, s.Executed)
	require.Zero(t, s.Running)
	x.Resume()
	testutil.Recv(t, ran, "the block after Resume")
	syncDone(t, x)
	require.Equal(t, uint64(1), x.Stats().Executed)
}

// A handed block that ends its goroutine with runtime.Goexit: it counts as run, the queue is
// idle again and takes the next block, and the worker is replaced.
func TestAHandedBlockThatCallsGoexitLeavesItsQueueIdleAndCounted(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	a, x := NewSerial("a"), NewSerial("x")
	handed := make(chan bool, 1)
	a.Async(func() {
		x.Async(func() { runtime.Goexit() })
		handed <- handedFirst(x)
	})
	require.True(t, testutil.Recv(t, handed, "the submitting block"))
	syncDone(t, x)
	ran := make(chan struct{})
	x.Async(func() { close(ran) })
	testutil.Recv(t, ran, "the block after the Goexit")
	syncDone(t, x)
	s := x.Stats()
	require.Equal(t, uint64(2), s.Executed)
	require.Zero(t, s.Pending)
	require.Zero(t, s.Running)
}
