package dispatch

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestGroupWaitsForEveryBlockAndNotifiesOnce(t *testing.T) {
	var g Group // the zero value is ready
	require.NoError(t, g.Wait(context.Background()), "an empty group")
	q := queue.NewConcurrent("work")
	var n atomic.Int32
	release := make(chan struct{})
	for range 100 {
		g.Async(q, func() { <-release; n.Add(1) })
	}
	notified := make(chan int32, 4)
	main := queue.NewSerial("main")
	g.Notify(main, func() { notified <- n.Load() })
	g.Notify(main, func() { notified <- n.Load() })
	notYet(t, notified, "Notify before the group is empty")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, g.Wait(ctx), context.Canceled, "Wait gives up with its context")

	close(release)
	require.NoError(t, g.Wait(context.Background()))
	require.EqualValues(t, 100, n.Load())
	require.EqualValues(t, 100, testutil.Recv(t, notified, "the first Notify"), "Notify ran before the last block left")
	require.EqualValues(t, 100, testutil.Recv(t, notified, "the second Notify"))
	require.NoError(t, main.Close(context.Background()))
	require.Empty(t, notified, "a notification ran twice")

	g.Notify(q, func() { notified <- -1 })
	require.EqualValues(t, -1, testutil.Recv(t, notified, "Notify on an empty group"))
}

func TestGroupIsReusable(t *testing.T) {
	var g Group
	q := queue.NewSerial("q")
	for round := range 3 {
		var n atomic.Int32
		for range 10 {
			g.Async(q, func() { n.Add(1) })
		}
		require.NoError(t, g.Wait(context.Background()))
		require.EqualValues(t, 10, n.Load(), "round %d", round)
	}
}

func TestGroupEnterLeave(t *testing.T) {
	var g Group
	g.Enter()
	g.Enter()
	done := make(chan error, 1)
	go func() { done <- g.Wait(context.Background()) }()
	g.Leave()
	notYet(t, done, "Wait with one unit left")
	g.Leave()
	require.NoError(t, testutil.Recv(t, done, "Wait"))
	require.PanicsWithValue(t, "dispatch: Group.Leave without a matching Enter (unbalanced Leave)", g.Leave)
	require.NoError(t, g.Wait(context.Background()), "an unbalanced Leave leaves the group as it was")
}

func TestGroupAsyncOnAClosedQueueLeavesTheGroupBalanced(t *testing.T) {
	var g Group
	q := queue.NewSerial("closed")
	require.NoError(t, q.Close(context.Background()))
	require.Panics(t, func() { g.Async(q, func() {}) })
	require.NoError(t, g.Wait(context.Background()), "the refused block still counted")
	require.Panics(t, func() { g.Async(queue.NewSerial("q"), nil) })
	require.Panics(t, func() { g.Notify(queue.NewSerial("q"), nil) })
}

func TestGroupNotifyOntoAClosedQueueGoesQuiet(t *testing.T) {
	closed := queue.NewSerial("closed")
	require.NoError(t, closed.Close(context.Background()))
	panics := make(chan any, 4)
	other := queue.NewSerial("other", queue.WithPanicHandler(func(r any, _ []byte) { panics <- r }))
	var g Group
	g.Enter()
	g.Notify(closed, func() { t.Error("a notification ran on a closed queue") })
	other.Async(g.Leave) // the block that empties the group is another queue's
	other.Sync(func() {})
	require.Empty(t, panics, "Leave panicked for the closed queue of a notification")
	require.NotPanics(t, func() { g.Notify(closed, func() { t.Error("ran on a closed queue") }) }, "Notify on an empty group")
	require.EqualValues(t, 2, closed.Stats().Rejected, "the dropped notifications are counted")
	require.NoError(t, g.Wait(context.Background()))
}
