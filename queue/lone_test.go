package queue

import (
	"context"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A block handed to an idle serial queue runs in a lone episode: its drainer holds the queue
// by the hold word alone and gives it back with one CAS (drainSerial). These tests pin what
// must hold when something comes while that block runs: the drainer then goes on as an
// ordinary one, and nothing is lost, run early or counted twice.

// loneRunning returns an idle plain serial queue whose block runs now, in a lone episode,
// and the gate that block waits on.
func loneRunning(t *testing.T, label string) (*Queue, *gate) {
	t.Helper()
	q := NewSerial(label)
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the lone block")
	require.NotZero(t, q.hold.Load()&holdLone, "the block runs in a lone episode")
	return q, g
}

func TestABlockQueuedDuringALoneEpisodeRunsAfterIt(t *testing.T) {
	q, g := loneRunning(t, "lone-queued")
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	require.NotZero(t, q.hold.Load()&holdQueued, "the block queued meanwhile marks the word")
	require.Equal(t, 2, q.Stats().Pending+q.Stats().Running)
	g.open()
	testutil.Recv(t, ran, "the block queued during the lone episode")
	syncDone(t, q)
	require.Zero(t, q.hold.Load()&^holdCount)
	s := q.Stats()
	require.EqualValues(t, 2, s.Executed)
	require.Zero(t, s.Pending)
	require.Zero(t, s.Running)
}

func TestASyncDuringALoneEpisodeWaitsForItsBlock(t *testing.T) {
	q, g := loneRunning(t, "lone-sync")
	done := make(chan bool, 1)
	var finished bool
	go func() {
		q.Sync(func() { done <- finished })
	}()
	waitFor(t, "the Sync caller to queue", func() bool { return q.hold.Load()&holdQueued != 0 })
	finished = true // before the gate opens: the Sync block must see it
	g.open()
	require.True(t, testutil.Recv(t, done, "the Sync block"), "the Sync ran after the lone block")
	syncDone(t, q)
	require.EqualValues(t, 1, q.Stats().Executed)
}

func TestCloseDuringALoneEpisodeWaitsForItsBlock(t *testing.T) {
	q, g := loneRunning(t, "lone-close")
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	waitFor(t, "Close to mark the word", func() bool { return q.hold.Load()&holdClosed != 0 })
	select {
	case <-closed:
		t.Fatal("Close returned while the lone block ran")
	default:
	}
	g.open()
	require.NoError(t, testutil.Recv(t, closed, "Close"))
	s := q.Stats()
	require.EqualValues(t, 1, s.Executed)
	require.Zero(t, s.Pending)
	require.Error(t, q.TryAsync(func() {}))
}

func TestSuspendDuringALoneEpisodeHoldsWhatCameMeanwhile(t *testing.T) {
	q, g := loneRunning(t, "lone-suspend")
	q.Suspend()
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	g.open()
	waitFor(t, "the lone block's drainer to give the suspended queue back",
		func() bool { return q.hold.Load()&holdBusy == 0 })
	s := q.Stats()
	require.EqualValues(t, 1, s.Executed)
	require.Equal(t, 1, s.Pending)
	q.Resume()
	testutil.Recv(t, ran, "the block queued while suspended")
	syncDone(t, q)
	require.EqualValues(t, 2, q.Stats().Executed)
}

func TestALoneBlockThatSyncsOntoItsOwnQueueIsToldItWouldDeadlock(t *testing.T) {
	q := NewSerial("lone-self")
	errc := make(chan error, 1)
	q.Async(func() {
		errc <- q.SyncContext(context.Background(), func(context.Context) {})
	})
	require.ErrorIs(t, testutil.Recv(t, errc, "the block's own Sync"), ErrWouldDeadlock)
	syncDone(t, q)
}

func TestALoneBlockThatCallsGoexitLeavesItsQueueIdleAndCounted(t *testing.T) {
	q := NewSerial("lone-goexit")
	for range 3 {
		exited := make(chan struct{})
		q.Async(func() {
			defer close(exited)
			runtime.Goexit()
		})
		testutil.Recv(t, exited, "the block that calls Goexit")
		syncDone(t, q)
	}
	waitFor(t, "the queue to go idle", func() bool { return idleWord(q.hold.Load()) })
	s := q.Stats()
	require.EqualValues(t, 3, s.Executed)
	require.Zero(t, s.Pending)
	require.NoError(t, closeWithin(q))
}

// The hold word's lone count never wraps: the lone drainer that finds it full folds it, with
// its own block, into acc and done under the lock, and the queue's figures do not move.
func TestLoneCountsFoldIntoTheQueuesTotals(t *testing.T) {
	q := NewSerial("lone-fold")
	full := loneCount(holdCount)
	q.hold.Store((full - 1) << holdCountShift) // as if that many lone episodes had run
	before := q.Stats().Executed
	require.EqualValues(t, full-1, before)
	for range 2 { // nothing else comes: each block runs in a lone episode
		q.Async(func() {})
		waitFor(t, "the queue to go idle", func() bool { return idleWord(q.hold.Load()) })
	}
	require.Zero(t, q.hold.Load(), "the count folded")
	s := q.Stats()
	require.EqualValues(t, full+1, s.Executed)
	require.Zero(t, s.Pending)
	q.mu.Lock()
	require.EqualValues(t, full+1, q.acc)
	require.Zero(t, q.live())
	q.mu.Unlock()
}

// A lone block counts in the hold word: Stats sees it, and a Sync or Async onto the idle
// queue takes it with the count in the word, which they keep.
func TestTheLoneCountStaysInTheIdleQueuesWord(t *testing.T) {
	q := NewSerial("lone-word")
	for i := 1; i <= 3; i++ {
		q.Async(func() {})
		waitFor(t, "the queue to go idle", func() bool { return q.hold.Load()&holdBusy == 0 })
	}
	require.EqualValues(t, 3, loneCount(q.hold.Load()), "three lone episodes")
	var held uint64
	q.Sync(func() { held = q.hold.Load() })
	require.Equal(t, holdFast, held&holdFast, "the Sync took the idle queue without the lock")
	require.EqualValues(t, 3, loneCount(held))
	require.Equal(t, 3*holdCountOne, q.hold.Load(), "given back with the count")
	s := q.Stats()
	require.EqualValues(t, 3, s.Executed)
	require.Zero(t, s.Pending)
}

// A lone block is counted before its queue is given back: a Sync that takes the queue next
// sees it in Stats.Executed. The hook holds the lone drainer just after it gave the queue
// back, which is where the block was counted before the fix (after the releasing CAS): the
// Sync then takes the idle queue in that window every time.
func TestALoneBlockIsCountedBeforeItsQueueIsIdle(t *testing.T) {
	q := NewSerial("lone-count")
	released := make(chan struct{}, 1)
	resume := make(chan struct{})
	hook := func(r *Queue) {
		if r != q {
			return
		}
		released <- struct{}{}
		<-resume
	}
	loneReleasedHook.Store(&hook)
	t.Cleanup(func() {
		loneReleasedHook.Store(nil)
		close(resume) // a drainer held when the test failed goes on
	})
	for i := range 20 {
		q.Async(func() {})
		testutil.Recv(t, released, "the lone drainer to give the queue back")
		var executed uint64
		q.Sync(func() { executed = q.Stats().Executed })
		require.EqualValues(t, i+1, executed, "the lone block is counted once its queue is idle")
		resume <- struct{}{}
	}
	waitFor(t, "the queue to go idle", func() bool { return idleWord(q.hold.Load()) })
	require.NoError(t, closeWithin(q))
}
