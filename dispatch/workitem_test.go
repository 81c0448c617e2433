package dispatch

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestWorkItemRunsAtMostOnceAndNotifies(t *testing.T) {
	n := 0
	w := NewWorkItem(func() { n++ })
	q := queue.NewSerial("q")
	notified := make(chan struct{})
	w.Notify(q, func() { close(notified) })
	notYet(t, notified, "Notify before Run")
	w.Run()
	w.Run()
	require.Equal(t, 1, n)
	require.False(t, w.Cancelled())
	require.NoError(t, w.Wait(context.Background()))
	testutil.Recv(t, notified, "Notify")
	again := make(chan struct{})
	w.Notify(q, func() { close(again) })
	testutil.Recv(t, again, "Notify after Run")
}

func TestWorkItemWaitGivesUpWithItsContext(t *testing.T) {
	w := NewWorkItem(func() {})
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- w.Wait(ctx) }()
	notYet(t, errs, "Wait before Run")
	cancel()
	require.ErrorIs(t, testutil.Recv(t, errs, "Wait after its context ended"), context.Canceled)
}

func TestCancelledWorkItemNeverRunsButCompletes(t *testing.T) {
	w := NewWorkItem(func() { t.Error("a cancelled item ran") })
	w.Cancel()
	require.True(t, w.Cancelled())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, w.Wait(ctx), context.Canceled, "not Run yet")
	notified := make(chan struct{})
	w.Notify(queue.NewSerial("q"), func() { close(notified) })
	queue.NewSerial("q").Async(w.Run)
	require.NoError(t, w.Wait(context.Background()), "Run of a cancelled item completes it")
	testutil.Recv(t, notified, "Notify of a cancelled item")
}

func TestCancelDoesNotInterruptARunningItem(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	finished := false
	w := NewWorkItem(func() { close(started); <-release; finished = true })
	ran := make(chan struct{})
	go func() {
		w.Run()
		close(ran)
	}()
	testutil.Recv(t, started, "the item")
	w.Cancel()
	require.True(t, w.Cancelled())
	close(release)
	require.NoError(t, w.Wait(context.Background()))
	require.True(t, finished, "Wait returned before the running fn ended")
	// Run may still be on its way out after Wait returns: let it leave, or a later test that
	// looks for dispatch's goroutines finds it.
	testutil.Recv(t, ran, "Run to return")
}

func TestWorkItemPanicStillCompletesIt(t *testing.T) {
	w := NewWorkItem(func() { panic("boom") })
	require.PanicsWithValue(t, "boom", w.Run)
	require.NoError(t, w.Wait(context.Background()))
	require.Panics(t, func() { NewWorkItem(nil) })
}

func TestAfterRunsOnItsQueueAtItsTimeAndNotBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("later")
		start := time.Now()
		ran := make(chan time.Time, 1)
		onQ := false
		w := After(5*time.Second, q, func() {
			onQ = q.IsCurrent()
			ran <- time.Now()
		})
		time.Sleep(5*time.Second - time.Nanosecond)
		synctest.Wait()
		none(t, ran, "the After block ran before its delay")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		require.Equal(t, start.Add(5*time.Second), <-ran)
		require.True(t, onQ, "After's block runs on its queue")
		require.NoError(t, w.Wait(context.Background()))
		require.False(t, w.Cancelled())
		synctest.Wait() // the worker that ran the block may still be on its way out
		require.Empty(t, dispatchGoroutines(""))
	})
}

func TestCancelledAfterNeverRunsAndFinishesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("later")
		w := After(time.Hour, q, func() { t.Error("a cancelled After ran") })
		notified := make(chan struct{})
		w.Notify(q, func() { close(notified) })
		time.Sleep(time.Minute)
		w.Cancel()
		synctest.Wait()
		start := time.Now()
		require.NoError(t, w.Wait(context.Background()), "a cancelled After finishes at once")
		<-notified
		require.Equal(t, start, time.Now())
		time.Sleep(2 * time.Hour)
		synctest.Wait()
	})
}

func TestAfterOnAQueueClosedMeanwhileEndsCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("later")
		w := After(time.Second, q, func() { t.Error("ran on a closed queue") })
		require.NoError(t, q.Close(context.Background()))
		time.Sleep(time.Second)
		synctest.Wait()
		require.NoError(t, w.Wait(context.Background()))
		require.True(t, w.Cancelled(), "dropped because its queue closed")
	})
}

func TestAfterCancelledAfterItFiredStillDoesNotRunIfNotStarted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("busy")
		release := make(chan struct{})
		q.Async(func() { <-release }) // q is busy when the timer fires
		w := After(time.Second, q, func() { t.Error("a cancelled item ran") })
		time.Sleep(time.Second)
		synctest.Wait()
		require.EqualValues(t, 1, q.Stats().Pending, "the timer fired: w.Run waits on q behind the busy block")
		w.Cancel()
		close(release)
		require.NoError(t, w.Wait(context.Background()))
		require.True(t, w.Cancelled())
	})
}

func TestWorkItemNotifyOntoAClosedQueueGoesQuiet(t *testing.T) {
	closed := queue.NewSerial("closed")
	require.NoError(t, closed.Close(context.Background()))
	panics := make(chan any, 4)
	other := queue.NewSerial("other", queue.WithPanicHandler(func(r any, _ []byte) { panics <- r }))
	ran := false
	w := NewWorkItem(func() { ran = true })
	w.Notify(closed, func() { t.Error("a notification ran on a closed queue") })
	other.Async(w.Run) // the block that runs the item is another queue's
	require.NoError(t, w.Wait(context.Background()))
	other.Sync(func() {})
	require.True(t, ran)
	require.Empty(t, panics, "Run panicked for the closed queue of a notification")
	require.NotPanics(t, func() { w.Notify(closed, func() { t.Error("ran on a closed queue") }) }, "Notify after Run")
	require.EqualValues(t, 2, closed.Stats().Rejected, "the dropped notifications are counted")
}
