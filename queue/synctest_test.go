package queue

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// Queues inside a synctest bubble: blocks run on workers of the bubble, so they may use its
// channels and its fake clock, and when the test function returns nothing of the executor
// is left in the bubble (synctest.Test fails with "blocked goroutines remain" otherwise).
func TestQueuesInsideASynctestBubble(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	// An outside worker, busy when the bubble submits and freed right after: sharing one pool
	// with the bubble, it would take the bubble's block, and a goroutine outside a bubble
	// that touches the bubble's channels is a fatal error.
	outside := newGate()
	Global(Default).Async(outside.block)
	testutil.Recv(t, outside.started, "the outside block")

	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		q := NewSerial("bubbled")
		got := make(chan time.Duration, 4)
		q.Async(func() {
			time.Sleep(time.Hour) // fake time: passes as soon as the bubble is idle
			got <- time.Since(start)
		})
		outside.open()
		require.Equal(t, time.Hour, <-got)

		// Sync, a Global root, and a timer that submits.
		var n int
		q.Sync(func() { n++ })
		Global(Utility).Async(func() { got <- time.Since(start) })
		require.Equal(t, time.Hour, <-got)
		time.AfterFunc(time.Minute, func() { q.Async(func() { got <- time.Since(start) }) })
		require.Equal(t, time.Hour+time.Minute, <-got)
		require.Equal(t, 1, n)
		synctest.Wait()
		// Idle: no worker and no monitor left, without any time passing.
		require.Equal(t, time.Hour+time.Minute, time.Since(start))
	})
	syncDone(t, Global(Default))
}

// The stalled-worker monitor runs on the bubble's fake clock: a block that sleeps holds the
// only worker, and the monitor lends another, so a second queue progresses long before the
// sleep ends.
func TestMonitorLendsAWorkerInsideABubble(t *testing.T) {
	withProcs(t, 1)
	lendFreely(t)
	// The process's real samples would see goroutines outside the bubble (earlier tests'
	// workers on their way out, waiting for the one P under -cpu 1) as a machine short of
	// CPU, and the monitor rightly lends nothing then: the sleeper's hour passed first, 1
	// run in ~3 of the package at -cpu 1. Inside the bubble the workers use no CPU and nobody
	// waits for a P.
	setSampler(t, func() procSample { return procSample{} })
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		sleeper, other := NewSerial("sleeper"), NewSerial("other")
		slept := make(chan struct{})
		sleeper.Async(func() {
			time.Sleep(time.Hour)
			close(slept)
		})
		ran := make(chan time.Duration, 1)
		other.Async(func() { ran <- time.Since(start) })
		waited := <-ran
		require.Less(t, waited, time.Hour)
		require.GreaterOrEqual(t, waited, stallThreshold)
		require.GreaterOrEqual(t, Executor().Lent, 1)
		<-slept
	})
}

// Two bubbles at once: each has its own pool, so neither bubble's workers run the other's
// blocks (which would touch the other bubble's channels: a fatal error).
func TestTwoBubblesAtOnceKeepTheirWorkersApart(t *testing.T) {
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				q := NewSerial(name)
				got := make(chan int)
				for i := range 200 {
					q.Async(func() {
						time.Sleep(time.Millisecond)
						got <- i
					})
					Global(Default).Async(func() {}) // root items of both bubbles side by side
					require.Equal(t, i, <-got)
				}
				require.Equal(t, 200*time.Millisecond, time.Since(start))
			})
		})
	}
}
