package dispatch

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// fullQueue returns a serial queue made WithLimit(1) and full: one block runs until release
// is called and one more waits. It works inside a synctest bubble and outside.
func fullQueue(t *testing.T, opts ...queue.Option) (q *queue.Queue, release func()) {
	t.Helper()
	q = queue.NewSerial("full", append(opts, queue.WithLimit(1))...)
	started, rel := make(chan struct{}), make(chan struct{})
	q.Async(func() { close(started); <-rel })
	testutil.Recv(t, started, "the block that keeps the queue busy")
	q.Async(func() {})
	require.EqualValues(t, 1, q.Stats().Pending, "the queue is full")
	return q, sync1(func() { close(rel) })
}

// sync1 makes f safe to call more than once (a release in a t.Cleanup and in the test).
func sync1(f func()) func() {
	done := false
	return func() {
		if !done {
			done = true
			f()
		}
	}
}

// closeAsync starts Close of q and returns where its result arrives.
func closeAsync(q *queue.Queue) <-chan error {
	errs := make(chan error, 1)
	go func() { errs <- q.Close(context.Background()) }()
	return errs
}

func TestTimerOnAFullQueueClosedWhileItWaitsDoesNotCrash(t *testing.T) {
	inChild(t, func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q, release := fullQueue(t)
			ticks := make(chan struct{}, 10)
			tm := NewTimer(q, time.Second, 0, func() { ticks <- struct{}{} })
			tm.SetCancelHandler(func() { t.Error("a cancel handler ran on a closed queue") })
			tm.Resume()
			time.Sleep(time.Second)
			synctest.Wait() // the tick waits for room on q
			closed := closeAsync(q)
			synctest.Wait() // the tick's wait ends: before the fix, a panic on the timer's goroutine
			release()
			require.NoError(t, <-closed)
			time.Sleep(time.Hour)
			synctest.Wait()
			none(t, ticks, "a tick delivered on a closed queue")
			tm.Cancel()
		})
	})
}

func TestMergeOnAFullQueueClosedWhileItWaitsDoesNotCrash(t *testing.T) {
	inChild(t, func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q, release := fullQueue(t)
			d := NewDataAdd(q, func(uint64) { t.Error("delivered on a closed queue") })
			d.Resume()
			merged := make(chan struct{})
			go func() { d.Merge(1); close(merged) }()
			synctest.Wait() // the Merge waits for room on q
			closed := closeAsync(q)
			synctest.Wait() // before the fix, the Merge panicked here
			<-merged
			d.Merge(1) // quiet now: returns at once
			release()
			require.NoError(t, <-closed)
			d.Cancel()
		})
	})
}

func TestAfterOnAFullQueueClosedWhileItWaitsDoesNotCrash(t *testing.T) {
	inChild(t, func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			q, release := fullQueue(t)
			w := After(time.Second, q, func() { t.Error("ran on a closed queue") })
			time.Sleep(time.Second)
			synctest.Wait() // the item waits for room on q
			closed := closeAsync(q)
			synctest.Wait() // before the fix, a panic on the timer's goroutine
			require.NoError(t, w.Wait(context.Background()))
			require.True(t, w.Cancelled(), "dropped because its queue closed")
			release()
			require.NoError(t, <-closed)
		})
	})
}

func TestDataSourceGoesOnAfterItsHandlerPanics(t *testing.T) {
	panics := make(chan any, 4)
	q := queue.NewSerial("q", queue.WithPanicHandler(func(r any, _ []byte) { panics <- r }))
	got := make(chan uint64, 4)
	entered, release := make(chan struct{}), make(chan struct{})
	d := NewDataAdd(q, func(n uint64) {
		if n == 1 {
			close(entered)
			<-release
			panic("boom")
		}
		got <- n
	})
	d.Resume()
	d.Merge(1)
	testutil.Recv(t, entered, "the handler")
	d.Merge(2) // while the handler that will panic runs
	close(release)
	require.Equal(t, "boom", testutil.Recv(t, panics, "the panic"))
	require.EqualValues(t, 2, testutil.Recv(t, got, "the merge made while the handler panicked"))
	d.Merge(3)
	require.EqualValues(t, 3, testutil.Recv(t, got, "a merge after the panic"))

	cancelled := make(chan struct{})
	d.SetCancelHandler(func() { close(cancelled) })
	d.Cancel()
	testutil.Recv(t, cancelled, "the cancel handler of a source whose handler panicked")
	require.NoError(t, q.Close(context.Background()))
	require.Empty(t, got)
}

func TestSourceCancelledByItsPanickingHandlerRunsItsCancelHandler(t *testing.T) {
	panics := make(chan any, 4)
	q := queue.NewSerial("q", queue.WithPanicHandler(func(r any, _ []byte) { panics <- r }))
	var d *DataSource
	d = NewDataAdd(q, func(uint64) {
		d.Cancel()
		panic("boom")
	})
	cancelled := make(chan struct{})
	d.SetCancelHandler(func() {
		if !q.IsCurrent() {
			t.Error("the cancel handler ran off its queue")
		}
		close(cancelled)
	})
	d.Resume()
	d.Merge(1)
	require.Equal(t, "boom", testutil.Recv(t, panics, "the panic"))
	testutil.Recv(t, cancelled, "the cancel handler")
	require.NoError(t, q.Close(context.Background()))
}

func TestTimerGoesOnAfterItsHandlerPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		panics := make(chan any, 4)
		q := queue.NewSerial("timer", queue.WithPanicHandler(func(r any, _ []byte) { panics <- r }))
		ticks := make(chan time.Time, 10)
		n := 0
		tm := NewTimer(q, time.Second, 0, func() {
			n++
			if n == 1 {
				panic("boom")
			}
			ticks <- time.Now()
		})
		start := time.Now()
		tm.Resume()
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, "boom", now(t, panics, "the panic"))
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, start.Add(2*time.Second), now(t, ticks, "the tick after the panicking one"))
		cancelled := make(chan struct{})
		tm.SetCancelHandler(func() { close(cancelled) })
		tm.Cancel()
		synctest.Wait()
		now(t, cancelled, "the cancel handler")
	})
}

// rejections is a queue.Observer that counts the blocks its queues refused.
type rejections struct{ n atomic.Int32 }

func (*rejections) QueueCreated(*queue.Queue) {}
func (*rejections) Enqueued(_ *queue.Queue, ctx context.Context, _ queue.BlockKind) context.Context {
	return ctx
}
func (*rejections) Started(_ *queue.Queue, ctx context.Context, _ queue.BlockInfo) context.Context {
	return ctx
}
func (*rejections) Finished(*queue.Queue, context.Context, queue.BlockInfo) {}
func (r *rejections) Rejected(_ *queue.Queue, err error) {
	if errors.Is(err, queue.ErrClosed) {
		r.n.Add(1)
	}
}
func (*rejections) QueueClosed(*queue.Queue) {}

func TestWhatAClosedQueueRefusesIsCountedAndObserved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		obs := &rejections{}
		q, release := fullQueue(t, queue.WithObserver(obs))
		tm := NewTimer(q, time.Second, 0, func() { t.Error("a tick on a closed queue") })
		tm.SetCancelHandler(func() { t.Error("a cancel handler ran on a closed queue") })
		tm.Resume()
		d := NewDataAdd(q, func(uint64) { t.Error("a merge delivered on a closed queue") })
		d.Resume()
		go d.Merge(1)
		w := After(time.Second, q, func() { t.Error("an After block ran on a closed queue") })
		time.Sleep(time.Second)
		synctest.Wait() // the tick, the Merge and the After item wait for room on q
		closed := closeAsync(q)
		synctest.Wait()
		require.EqualValues(t, 3, q.Stats().Rejected, "the tick, the Merge and the After item")
		require.EqualValues(t, 3, obs.n.Load())
		require.True(t, w.Cancelled())
		d.Merge(1) // the source went quiet: nothing more is submitted
		tm.Cancel()
		d.Cancel()
		require.EqualValues(t, 3, q.Stats().Rejected, "a quiet source submitted again")
		release()
		require.NoError(t, <-closed)
	})
}

func TestAfterCancelledWhileItWaitsForRoomFinishesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, release := fullQueue(t)
		w := After(time.Second, q, func() { t.Error("a cancelled After ran") })
		time.Sleep(time.Second)
		synctest.Wait() // the item waits for room on q
		w.Cancel()
		synctest.Wait()
		now(t, w.done, "the end of a cancelled After item")
		require.True(t, w.Cancelled())
		release()
		require.NoError(t, q.Close(context.Background()))
		require.Zero(t, q.Stats().Rejected, "a cancelled item is not a refused one")
	})
}

func TestCancelEndsAMergeWaitingForRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, release := fullQueue(t)
		d := NewDataAdd(q, func(uint64) { t.Error("delivered after Cancel") })
		cancelled := make(chan struct{})
		d.SetCancelHandler(func() { close(cancelled) })
		d.Resume()
		merged := make(chan struct{})
		go func() { d.Merge(1); close(merged) }()
		synctest.Wait() // the Merge waits for room on q
		go d.Cancel()   // it waits for room for the cancel handler, in the Merge's place
		synctest.Wait()
		now(t, merged, "the Merge's return once the source was cancelled")
		release()
		synctest.Wait()
		now(t, cancelled, "the cancel handler")
		require.NoError(t, q.Close(context.Background()))
	})
}

func TestMergeFromABlockOfItsFullQueueDoesNotHang(t *testing.T) {
	q := queue.NewSerial("full", queue.WithLimit(1))
	got := make(chan uint64, 4)
	d := NewDataAdd(q, func(n uint64) { got <- n })
	d.Resume()
	release, merged := make(chan struct{}), make(chan struct{})
	q.Async(func() { <-release; d.Merge(1); close(merged) })
	q.Async(func() {}) // full
	close(release)
	testutil.Recv(t, merged, "the Merge made by a block of the full queue")
	require.EqualValues(t, 1, testutil.Recv(t, got, "the merge"))
	d.Cancel()
	require.NoError(t, q.Close(context.Background()))
}

func TestHandlerMergingIntoItsSourceOnAFullQueueDoesNotHang(t *testing.T) {
	q := queue.NewSerial("full", queue.WithLimit(1))
	got := make(chan uint64, 4)
	entered, filled := make(chan struct{}), make(chan struct{})
	var d *DataSource
	d = NewDataAdd(q, func(n uint64) {
		got <- n
		if n == 1 {
			close(entered)
			<-filled
			d.Merge(2) // delivered by a new run block, submitted as this one ends
		}
	})
	d.Resume()
	d.Merge(1)
	testutil.Recv(t, entered, "the handler")
	q.Async(func() {}) // full
	close(filled)
	require.EqualValues(t, 1, testutil.Recv(t, got, "the first merge"))
	require.EqualValues(t, 2, testutil.Recv(t, got, "the merge made by the handler"))
	d.Cancel()
	require.NoError(t, q.Close(context.Background()))
}

// A Cancel that finds a submission still on its way (the submitter has not yet come back
// from the queue) while that submission's run block has already delivered and finished: the
// run block saw no Cancel, so Cancel must queue the cancel handler itself. It used to take
// the submission's outcome (not abandoned) as the answer and queue nothing: the cancel
// handler never ran (TestSignalSourceDeliversAndStopsOnCancel timed out 1 in ~300 runs).
func TestCancelAfterTheRunOfASubmissionStillOnItsWayQueuesTheCancelHandler(t *testing.T) {
	q := queue.NewSerial("source")
	got := make(chan uint64, 1)
	src := NewDataAdd(q, func(n uint64) { got <- n })
	src.Resume()

	submitted, release := make(chan struct{}), make(chan struct{})
	cancelWaits := make(chan struct{})
	testHookSubmitted = func() {
		close(submitted)
		<-release
	}
	testHookCancelWaits = func() { close(cancelWaits) }
	t.Cleanup(func() { testHookSubmitted, testHookCancelWaits = nil, nil })

	merged := make(chan struct{})
	go func() {
		defer close(merged)
		src.Merge(3) // submits the run block, then stalls in the hook
	}()
	testutil.Recv(t, submitted, "the submission")
	require.Equal(t, uint64(3), testutil.Recv(t, got, "the delivery"))
	q.Sync(func() {}) // the run block has finished: nothing on its way will see the Cancel

	cancelled := make(chan struct{})
	src.SetCancelHandler(func() { close(cancelled) })
	cancelDone := make(chan struct{})
	go func() {
		defer close(cancelDone)
		src.Cancel()
	}()
	testutil.Recv(t, cancelWaits, "Cancel waiting for the submission on its way")
	testHookSubmitted = nil
	close(release)
	testutil.Recv(t, merged, "Merge's return")
	testutil.Recv(t, cancelDone, "Cancel's return")
	testutil.Recv(t, cancelled, "the cancel handler")
	require.NoError(t, q.Close(t.Context()))
}
