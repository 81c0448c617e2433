package queue

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestHigherQoSStartsFirstWhenWorkersAreScarce(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	g := newGate()
	Global(Background).Async(g.block) // the only worker is now busy
	testutil.Recv(t, g.started, "the blocking block")
	order := make(chan string, 4)
	low := NewSerial("low", WithQoS(Background))
	util := NewSerial("util", WithQoS(Utility))
	high := NewSerial("high", WithQoS(UserInteractive))
	low.Async(func() { order <- "low" })
	util.Async(func() { order <- "utility" })
	high.Async(func() { order <- "high" })
	Global(UserInitiated).Async(func() { order <- "initiated" })
	g.open()
	var got []string
	for range 4 {
		got = append(got, testutil.Recv(t, order, "a queued block"))
	}
	require.Equal(t, []string{"high", "initiated", "utility", "low"}, got)
	require.Equal(t, UserInteractive, high.QoS())
	require.Equal(t, Global(UserInteractive), high.Target())
}

func TestQoSIsInheritedFromTheTargetAndValidated(t *testing.T) {
	parent := NewSerial("p", WithQoS(Utility))
	require.Equal(t, Utility, NewSerial("c", WithTarget(parent)).QoS())
	require.Panics(t, func() { NewSerial("bad", WithQoS(QoS(42))) })
	require.Panics(t, func() { Global(QoS(-1)) })
	require.Equal(t, "user-interactive", UserInteractive.String())
}

// Every queue here runs a block (Async, then a Sync that waits for it) before it is measured,
// each under a label of its own (made before the measurement): what a queue keeps after its
// first drain, its profiler-label context included, counts.
func TestIdleQueuesHoldNoGoroutineAndFewBytes(t *testing.T) {
	// As in a program that never calls SetSpecific: the Syncs take the plain path (an
	// earlier test's SetSpecific hid a cost of that path from this test).
	defer specificsUsed.Store(specificsUsed.Swap(false))
	const n = 100_000
	labels := make([]string, n)
	for i := range labels {
		labels[i] = fmt.Sprintf("conn-%d", i)
	}
	qs := make([]*Queue, n)
	var ran atomic.Int32
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	for i := range qs {
		qs[i] = NewSerial(labels[i])
	}
	for _, q := range qs {
		q.Async(func() { ran.Add(1) })
	}
	for _, q := range qs {
		q.Sync(func() {})
	}
	require.EqualValues(t, n, ran.Load(), "every queue ran a block")
	// Two collections: the deques' chunks went back to a sync.Pool, which keeps them through
	// one (its victim cache). They are the pool's, not the idle queues'.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perQueue := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f bytes per idle serial queue that has run a block", perQueue)
	require.LessOrEqual(t, perQueue, 256.0)
	require.LessOrEqual(t, runtime.NumGoroutine(), goroutines+1, "idle queues must not hold goroutines")
	runtime.KeepAlive(qs)
	runtime.KeepAlive(labels) // made before: not the queues' cost, and not a saving either
}

func TestQueuesProgressWhileEveryWorkerIsBlocked(t *testing.T) {
	withProcs(t, 2)
	stuck := NewConcurrent("stuck")
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	for range 2 {
		stuck.Async(func() { started <- struct{}{}; <-release })
	}
	testutil.Recv(t, started, "a blocking block")
	testutil.Recv(t, started, "a blocking block")
	// Both workers are held; the monitor must lend one for this queue.
	done := make(chan struct{})
	NewSerial("other").Async(func() { close(done) })
	testutil.Recv(t, done, "a block of another queue while every worker is blocked")
	require.GreaterOrEqual(t, Executor().LentTotal, uint64(1))
	close(release)
	syncDone(t, stuck)
}

func TestASyncWaiterOverridesTheQoSOfTheQueueItWaitsFor(t *testing.T) {
	for _, tc := range []struct {
		name     string
		syncWait bool
		ahead    int32 // background blocks that ran before the low queue's block
	}{
		{"without a waiter the low queue waits its turn", false, 50},
		{"a Default-QoS Sync waiter lifts it past the background backlog", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withProcs(t, 1)
			scarceWorkers(t)
			g := newGate()
			Global(Background).Async(g.block) // the only worker is busy
			testutil.Recv(t, g.started, "the blocking block")
			const n = 50
			var others atomic.Int32
			for range n {
				NewSerial("other", WithQoS(Background)).Async(func() { others.Add(1) })
			}
			low := NewSerial("low", WithQoS(Background))
			seen := make(chan int32, 1)
			low.Async(func() { seen <- others.Load() })
			synced := make(chan struct{})
			if tc.syncWait {
				go func() {
					low.Sync(func() {})
					close(synced)
				}()
				require.Eventually(t, func() bool { // the block and the Sync caller wait in line
					low.mu.Lock()
					defer low.mu.Unlock()
					// The block went to the idle queue's drainer (its batch) without the lock.
					return low.batch.n+low.items.n == 2
				}, waitTimeout, time.Millisecond)
			} else {
				close(synced)
			}
			g.open()
			require.Equal(t, tc.ahead, testutil.Recv(t, seen, "the low queue's block"))
			testutil.Recv(t, synced, "the Sync")
			require.Eventually(t, func() bool { return others.Load() == n }, waitTimeout, time.Millisecond)
		})
	}
}
