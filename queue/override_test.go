package queue

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A block of a higher QoS stuck behind a Background queue raises that queue until the block
// has run (GCD's override). One worker, held by a gate; then 50 Background blocks queue up,
// and then the low queue's drain behind them. What the test counts is how many of those 50
// ran before the urgent block: all of them without an override, none with one.
func TestAHigherQoSBlockOverridesTheQueueItWaitsIn(t *testing.T) {
	const n = 50
	for _, tc := range []struct {
		name  string
		setup func(low *Queue, gate func(), urgent func()) // holds the worker with gate, submits urgent
		ahead int32                                        // background blocks that ran before urgent
	}{
		{"a Background block submits: no override", func(low *Queue, gate, urgent func()) {
			Global(Background).Async(func() { gate(); low.Async(urgent) })
		}, n},
		{"a UserInteractive block submits", func(low *Queue, gate, urgent func()) {
			Global(UserInteractive).Async(func() { gate(); low.Async(urgent) })
		}, 0},
		{"a UserInteractive queue that targets it", func(low *Queue, gate, urgent func()) {
			high := NewSerial("high", WithQoS(UserInteractive), WithTarget(low))
			Global(Background).Async(func() { gate(); high.Async(urgent) })
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withProcs(t, 1)
			scarceWorkers(t)
			low := NewSerial("low", WithQoS(Background))
			g := newGate()
			seen := make(chan int32, 1)
			var others atomic.Int32
			tc.setup(low, g.block, func() { seen <- others.Load() })
			testutil.Recv(t, g.started, "the block holding the only worker")
			for range n {
				Global(Background).Async(func() { others.Add(1) })
			}
			first := make(chan int32, 1)
			low.Async(func() { first <- others.Load() }) // low's drain now waits behind the n
			g.open()
			got := testutil.Recv(t, seen, "the urgent block")
			require.Equal(t, tc.ahead, got)
			require.LessOrEqual(t, testutil.Recv(t, first, "low's first block"), got, "low stays FIFO")
			syncDone(t, Global(Background))
			syncDone(t, low)

			// The override ended with the block: low waits its turn again.
			g2 := newGate()
			Global(Background).Async(g2.block)
			testutil.Recv(t, g2.started, "the block holding the only worker")
			before := others.Load()
			for range n {
				Global(Background).Async(func() { others.Add(1) })
			}
			low.Async(func() { seen <- others.Load() - before })
			g2.open()
			require.Equal(t, int32(n), testutil.Recv(t, seen, "low's block after the override"))
			syncDone(t, Global(Background))
		})
	}
}

// overrides returns how many override entries the executor keeps for top.
func overrides(top *Queue) int {
	exec.mu.Lock()
	defer exec.mu.Unlock()
	return len(exec.overrides[top])
}

// A stream of Asyncs from a higher-QoS block keeps one override entry, and the entry goes
// when the queue has run the blocks, so an idle queue is not held by the executor.
func TestOverridesOfAStreamAreOneEntryAndEndWhenDrained(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	low := NewSerial("low", WithQoS(Background))
	var ran atomic.Int32
	held := make(chan int, 1)
	Global(UserInteractive).Async(func() {
		for range 100 {
			low.Async(func() { ran.Add(1) })
		}
		held <- overrides(low) // low cannot run yet: this block holds the only worker
	})
	require.Equal(t, 1, testutil.Recv(t, held, "the entries while the stream waits"))
	syncDone(t, low)
	require.Equal(t, int32(100), ran.Load())
	// The only worker takes this after it has finished with low's last drain.
	after := make(chan struct{})
	Global(Background).Async(func() { close(after) })
	testutil.Recv(t, after, "a block after low's drain")
	require.Zero(t, overrides(low), "entries of a drained queue")
}

// overrideEntries returns how many override entries the executor keeps in all.
func overrideEntries() int {
	exec.mu.Lock()
	defer exec.mu.Unlock()
	n := 0
	for _, list := range exec.overrides {
		n += len(list)
	}
	return n
}

func overrideOf(top *Queue) QoS {
	exec.mu.Lock()
	defer exec.mu.Unlock()
	return QoS(top.override)
}

// Overrides end with the work that asked for them, whatever the interleaving: an Async
// override when the queue has run the block, a child's when its drain starts, a Sync
// caller's when it has the queue. Round after round a UserInteractive block submits to a
// Background queue and to a UserInteractive queue that targets it, and once both have run,
// nothing is left in the table and the Background queue is back at its own class. (The
// entries were recorded after the submission, so a drain that ran first left them behind in
// a few rounds in a hundred, raising the queue for good.) Then the queues are collected:
// nothing of the executor keeps them alive.
func TestOverridesEndWithTheirWorkAndKeepNoQueueAlive(t *testing.T) {
	const rounds = 400
	var collected atomic.Int32
	for round := range rounds {
		low := NewSerial("low", WithQoS(Background))
		high := NewSerial("high", WithQoS(UserInteractive), WithTarget(low))
		runtime.AddCleanup(low, func(c *atomic.Int32) { c.Add(1) }, &collected)
		runtime.AddCleanup(high, func(c *atomic.Int32) { c.Add(1) }, &collected)
		done := make(chan struct{})
		Global(UserInteractive).Async(func() {
			low.Async(func() {})
			high.Async(func() { close(done) })
		})
		testutil.Recv(t, done, "the UserInteractive queue's block")
		syncDone(t, high)
		syncDone(t, low)
		require.Zero(t, overrideEntries(), "override entries left after round %d", round)
		require.Equal(t, QoS(0), overrideOf(low), "the Background queue's override after round %d", round)
	}
	syncDone(t, Global(UserInteractive))
	require.Eventually(t, func() bool {
		runtime.GC()
		return collected.Load() == 2*rounds
	}, waitTimeout, time.Millisecond, "queues collected")
}
