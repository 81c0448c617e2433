package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"
)

func TestWorkItemRunsAtMostOnceAndNotifies(t *testing.T) {
	n := 0
	w := NewWorkItem(func() { n++ })
	q := queue.NewSerial("q")
	notified := make(chan struct{})
	w.Notify(q, func() { close(notified) })
	w.Run()
	w.Run()
	require.Equal(t, 1, n)
	require.NoError(t, w.Wait(context.Background()))
	recv(t, notified, "Notify")
	again := make(chan struct{})
	w.Notify(q, func() { close(again) })
	recv(t, again, "Notify after Run")
}

func TestCancelledWorkItemNeverRunsButCompletes(t *testing.T) {
	w := NewWorkItem(func() { t.Error("a cancelled item ran") })
	w.Cancel()
	require.True(t, w.Cancelled())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, w.Wait(ctx), context.Canceled, "not Run yet")
	w.Run()
	require.NoError(t, w.Wait(context.Background()))
}

func TestCancelDoesNotInterruptARunningItem(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	finished := false
	w := NewWorkItem(func() { close(started); <-release; finished = true })
	go w.Run()
	recv(t, started, "the item")
	w.Cancel()
	close(release)
	require.NoError(t, w.Wait(context.Background()))
	require.True(t, finished)
}

func TestAfterRunsNotBeforeItsDelay(t *testing.T) {
	q := queue.NewSerial("later")
	const d = 20 * time.Millisecond
	start := time.Now()
	ran := make(chan time.Time, 1)
	w := After(d, q, func() { ran <- time.Now() })
	at := recv(t, ran, "the After block")
	require.GreaterOrEqual(t, at.Sub(start), d)
	require.NoError(t, w.Wait(context.Background()))
}

func TestCancelledAfterNeverRunsAndFinishes(t *testing.T) {
	q := queue.NewSerial("later")
	w := After(time.Hour, q, func() { t.Error("a cancelled After ran") })
	w.Cancel()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, w.Wait(ctx), "a cancelled After finishes at once")
}
