package queue

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A Sync caller waiting behind another Sync caller gets the queue from it directly when it
// finishes: no drainer has to be scheduled on a worker to hand it over. Here the only worker
// is busy, so a hand-over through a drainer would wait for it.
func TestASyncWaitingBehindASyncCallerGetsTheQueueWithoutAWorker(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	hold := newGate()
	Global(Default).Async(hold.block)
	testutil.Recv(t, hold.started, "the block holding the only worker")
	defer hold.open()

	q := NewSerial("handed-over")
	first := newGate()
	go q.Sync(first.block)
	testutil.Recv(t, first.started, "the first Sync")
	second := make(chan struct{})
	go func() {
		q.Sync(func() {})
		close(second)
	}()
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.items.n == 1
	}, waitTimeout, 100_000, "the second Sync waits in line")
	first.open()
	testutil.Recv(t, second, "the second Sync, while the only worker is still busy")
}

// A Sync that finds its queue busy with blocks queued waits behind them: looking again
// before it parks never lets it pass them.
func TestASyncThatFindsBlocksQueuedRunsAfterThem(t *testing.T) {
	q := NewSerial("in-line")
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the first block")
	order := make(chan string, 2)
	q.Async(func() { order <- "async" })
	synced := make(chan struct{})
	go func() {
		q.Sync(func() { order <- "sync" })
		close(synced)
	}()
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.items.n == 2
	}, waitTimeout, 100_000, "the Sync waits in line")
	g.open()
	testutil.Recv(t, synced, "the Sync")
	require.Equal(t, "async", <-order)
	require.Equal(t, "sync", <-order)
}
