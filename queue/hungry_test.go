package queue

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A flood of Asyncs (whose drainer sleeps for a batch, holdHungry, between batches), with
// Sync callers, Suspends and Resumes from other goroutines meanwhile: every block runs once,
// in order, Close sees them all, and the queue ends idle with no drainer asleep on it.
func TestAFloodWhoseDrainerSleepsForBatchesRunsOnceInOrderThroughSyncsAndSuspends(t *testing.T) {
	const n = 200_000
	q := NewSerial("flood")
	last := 0 // guarded by q
	var ran atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			q.Async(func() {
				assert.Equal(t, last+1, i, "out of order")
				last = i
				ran.Add(1)
			})
		}
	})
	wg.Go(func() { // Sync callers queue behind the flood and must get the queue
		for {
			select {
			case <-done:
				return
			default:
			}
			q.Sync(func() { _ = last })
		}
	})
	wg.Go(func() {
		for range 50 {
			select {
			case <-done:
				return
			default:
			}
			q.Suspend()
			runtime.Gosched()
			q.Resume()
		}
	})
	wg.Wait()
	q.Sync(func() { require.Equal(t, n, last) })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, q.Close(ctx))
	require.EqualValues(t, n, ran.Load())
	// The drainer may still be on its way out (asleep for a batch that does not come, at
	// most floodWait): the word ends closed and idle, no bit of the drainer's left. (The lone
	// count stays in an idle word: a block that found the queue idle ran in a lone episode.)
	for deadline := time.Now().Add(waitTimeout); q.hold.Load()&^holdCount != holdClosed; runtime.Gosched() {
		require.True(t, time.Now().Before(deadline), "the queue did not go idle: hold %#x", q.hold.Load())
	}
}

// A submitter that finds the drainer asleep for a batch wakes it only once floodBatch blocks
// wait and the queue may run; a Sync caller (any push of the slow path) wakes it at once.
func TestASleepingDrainerIsWokenForABatchOrASyncCaller(t *testing.T) {
	q := NewSerial("wake")
	q.Suspend() // no drainer runs: the test plays the drainer's part on the word
	for range floodBatch - 1 {
		q.Async(func() {})
	}
	q.mu.Lock()
	q.extLocked().wake = make(chan struct{}, 1)
	q.hold.Or(holdHungry)
	woken := func() bool {
		select {
		case <-q.ext.wake:
			return true
		default:
			return false
		}
	}
	q.wakeDrainerLocked(q.hold.Load(), floodBatch)
	require.False(t, woken(), "suspended: not woken")
	q.hold.And(^holdStopped)
	q.wakeDrainerLocked(q.hold.Load(), floodBatch)
	require.False(t, woken(), "fewer than floodBatch: not woken")
	require.NotZero(t, q.hold.Load()&holdHungry)
	q.items.pushBack(item{fn: func() {}})
	q.wakeDrainerLocked(q.hold.Load(), floodBatch)
	require.True(t, woken(), "floodBatch blocks: woken")
	require.Zero(t, q.hold.Load()&holdHungry, "the wake clears the mark")
	q.hold.Or(holdHungry)
	q.mu.Unlock()

	// Any push of the slow path (a Sync caller, a child's drain) wakes it at once, unless
	// the queue is stopped.
	q.mu.Lock()
	q.hold.Or(holdStopped)
	q.items.pushBack(item{fn: func() {}})
	require.EqualValues(t, 0, q.wakeLocked())
	require.False(t, woken(), "stopped: a slow-path push does not wake it")
	q.hold.And(^holdStopped)
	q.hold.Or(holdBusy) // as while its drainer runs: no drainer to start
	require.EqualValues(t, 0, q.wakeLocked())
	require.True(t, woken(), "a slow-path push wakes it")
	q.hold.And(^holdBusy)
	q.hold.Or(holdStopped) // as Suspend left it
	q.mu.Unlock()
	require.Zero(t, q.hold.Load()&holdHungry)
	q.Resume()
	q.Sync(func() {})
	require.EqualValues(t, floodBatch+1, q.Stats().Executed) // floodBatch-1 Asyncs and the two pushed here
}

// A drainer asleep for a batch counts as blocked, as a waiting Sync caller does: work that
// comes to the root meanwhile gets a worker of its own instead of waiting out the sleep. At
// GOMAXPROCS=1, with no worker lent and the sleep made long, another queue's block ran only
// once the flooded queue's drainer woke (this test timed out).
func TestADrainerAsleepForABatchLetsOtherWorkRun(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	floodWaitTest.Store(int64(time.Hour))
	t.Cleanup(func() { floodWaitTest.Store(0) })
	q := NewSerial("flooded")
	q.Suspend()
	for range floodBatch + 8 {
		q.Async(func() {})
	}
	q.Resume() // the drainer takes them all at once: a flood; then it sleeps for the next batch
	for deadline := time.Now().Add(waitTimeout); q.hold.Load()&holdHungry == 0; runtime.Gosched() {
		require.True(t, time.Now().Before(deadline), "the drainer did not go to sleep for a batch: hold %#x", q.hold.Load())
	}
	ran := make(chan struct{})
	NewSerial("other").Async(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(waitTimeout):
		t.Fatal("another queue's block waited for the sleeping drainer")
	}
	// A Sync wakes the drainer at once.
	q.Sync(func() {})
	require.EqualValues(t, floodBatch+8, q.Stats().Executed) // the Asyncs (a Sync is not counted there)
}
