package dispatch

import (
	"context"
	"sync"
	"testing"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestDataSourceStartsSuspendedAndDeliversMergesAsOneOnResume(t *testing.T) {
	q := queue.NewSerial("data")
	got := make(chan uint64, 10)
	d := NewDataAdd(q, func(n uint64) { got <- n })
	for range 1000 {
		d.Merge(1)
	}
	d.Merge(0) // does nothing, as in GCD
	q.Sync(func() {})
	require.Empty(t, got, "a source delivered before its first Resume")
	d.Resume()
	require.EqualValues(t, 1000, testutil.Recv(t, got, "the merges"))
	q.Sync(func() {})
	require.Empty(t, got, "merges made while suspended arrive as one call")

	d.Suspend()
	d.Merge(2)
	d.Merge(3)
	q.Sync(func() {})
	require.Empty(t, got, "a suspended source delivered")
	d.Resume()
	require.EqualValues(t, 5, testutil.Recv(t, got, "the merges made while suspended"))
	d.Cancel()
}

func TestDataSourceCoalescesMergesWhileTheHandlerRuns(t *testing.T) {
	q := queue.NewSerial("data")
	got := make(chan uint64, 10)
	entered, release := make(chan struct{}), make(chan struct{})
	first := true
	d := NewDataAdd(q, func(n uint64) {
		got <- n
		if first {
			first = false
			close(entered)
			<-release
		}
	})
	d.Resume()
	d.Merge(1)
	testutil.Recv(t, entered, "the handler")
	for range 100 {
		d.Merge(1) // while the handler runs
	}
	close(release)
	require.EqualValues(t, 1, testutil.Recv(t, got, "the first call"))
	require.EqualValues(t, 100, testutil.Recv(t, got, "the merges made while it ran, as one call"))
	q.Sync(func() {})
	require.Empty(t, got)
	d.Cancel()
}

func TestDataSourceLosesNoMergeUnderConcurrentMerging(t *testing.T) {
	q := queue.NewSerial("data")
	const want = 8 * 10_000
	var total uint64
	calls := 0
	all := make(chan struct{})
	d := NewDataAdd(q, func(n uint64) {
		total += n
		calls++
		if total == want {
			close(all)
		}
	})
	d.Resume()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10_000 {
				d.Merge(1)
			}
		})
	}
	wg.Wait()
	testutil.Recv(t, all, "every merge delivered")
	d.Cancel()
	require.NoError(t, q.Close(context.Background()))
	require.EqualValues(t, want, total, "more delivered than merged")
	require.Less(t, calls, want, "merges were never coalesced")
}

func TestDataOrAndReplace(t *testing.T) {
	q := queue.NewSerial("data")
	got := make(chan uint64, 4)
	or := NewDataOr(q, func(v uint64) { got <- v })
	or.Merge(1)
	or.Merge(4)
	or.Merge(1)
	or.Resume()
	require.EqualValues(t, 5, testutil.Recv(t, got, "the OR of the merges"))
	rep := NewDataReplace(q, func(v uint64) { got <- v })
	rep.Merge(7)
	rep.Merge(9)
	rep.Resume()
	require.EqualValues(t, 9, testutil.Recv(t, got, "the last value"))
	or.Cancel()
	rep.Cancel()
}

func TestSourceCancelHandlerRunsOnceAfterTheRunningHandler(t *testing.T) {
	q := queue.NewConcurrent("wide") // a concurrent queue: only the source keeps the order
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var events []string
	log := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	d := NewDataAdd(q, func(n uint64) {
		log("handler")
		close(entered)
		<-release
		log("handler done")
	})
	cancelled := make(chan struct{})
	d.SetCancelHandler(func() {
		if q.IsCurrent() {
			log("cancel handler")
		}
		close(cancelled)
	})
	d.Resume()
	d.Merge(1)
	testutil.Recv(t, entered, "the handler")
	d.Merge(1) // pending when Cancel comes: dropped
	d.Cancel()
	d.Cancel() // a second Cancel does nothing
	notYet(t, cancelled, "the cancel handler while the handler runs")
	close(release)
	testutil.Recv(t, cancelled, "the cancel handler")
	d.Merge(5) // after Cancel: dropped
	require.NoError(t, q.Close(context.Background()), "Close waits for any delivery still queued")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"handler", "handler done", "cancel handler"}, events, "the cancel handler runs on the queue, after the handler")
}

func TestCancelOfASuspendedSourceRunsItsCancelHandler(t *testing.T) {
	q := queue.NewSerial("data")
	d := NewDataAdd(q, func(uint64) { t.Error("a cancelled source delivered") })
	d.Merge(1)
	cancelled := make(chan struct{})
	d.SetCancelHandler(func() { close(cancelled) })
	d.Cancel() // never resumed
	testutil.Recv(t, cancelled, "the cancel handler of a suspended source")
	d.Resume() // balances the creation; delivers nothing
	q.Sync(func() {})
	require.Panics(t, d.Resume, "unbalanced Resume")
}

func TestSourceSuspendIsCounted(t *testing.T) {
	q := queue.NewSerial("data")
	got := make(chan uint64, 4)
	d := NewDataAdd(q, func(n uint64) { got <- n })
	d.Suspend() // suspended twice now
	d.Merge(1)
	d.Resume()
	q.Sync(func() {})
	require.Empty(t, got, "one Resume for two suspensions delivered")
	d.Resume()
	require.EqualValues(t, 1, testutil.Recv(t, got, "the merge"))
	require.PanicsWithValue(t,
		"dispatch: Resume of a source that is not suspended (unbalanced Resume: a source starts suspended and takes one Resume per Suspend)",
		d.Resume)
	d.Cancel()
}

func TestSourceOnAClosedQueueGoesQuiet(t *testing.T) {
	q := queue.NewSerial("data")
	d := NewDataAdd(q, func(uint64) { t.Error("delivered on a closed queue") })
	d.SetCancelHandler(func() { t.Error("a cancel handler ran on a closed queue") })
	d.Resume()
	require.NoError(t, q.Close(context.Background()))
	require.NotPanics(t, func() { d.Merge(1) })
	require.NotPanics(t, func() { d.Merge(1) })
	d.Cancel()
}

func TestDataSourceWaitsForRoomOnALimitedQueue(t *testing.T) {
	q := queue.NewSerial("limited", queue.WithLimit(1))
	release := make(chan struct{})
	q.Async(func() { <-release }) // q is full once this is running and one more is queued
	q.Async(func() {})
	got := make(chan uint64, 1)
	d := NewDataAdd(q, func(n uint64) { got <- n })
	d.Resume()
	merged := make(chan struct{})
	go func() { d.Merge(3); close(merged) }()
	notYet(t, merged, "a Merge that found the queue full")
	close(release)
	testutil.Recv(t, merged, "the Merge, once the queue had room")
	require.EqualValues(t, 3, testutil.Recv(t, got, "the merge"))
	d.Cancel()
}

func TestNewDataNeedsAHandlerAndAQueue(t *testing.T) {
	require.Panics(t, func() { NewDataAdd(queue.NewSerial("q"), nil) })
	require.Panics(t, func() { NewDataOr(nil, func(uint64) {}) })
}
