package dispatch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"
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
	notified := make(chan int32, 2)
	g.Notify(queue.NewSerial("main"), func() { notified <- n.Load() })
	notYet(t, notified, "Notify before the group is empty")

	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	require.ErrorIs(t, g.Wait(ctx), context.DeadlineExceeded)

	close(release)
	require.NoError(t, g.Wait(context.Background()))
	require.EqualValues(t, 100, n.Load())
	require.EqualValues(t, 100, recv(t, notified, "Notify"))
	notYet(t, notified, "a second notification")

	g.Notify(q, func() { notified <- -1 })
	require.EqualValues(t, -1, recv(t, notified, "Notify on an empty group"))
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
	require.NoError(t, recv(t, done, "Wait"))
	require.PanicsWithValue(t, "dispatch: Group.Leave without a matching Enter (unbalanced Leave)", g.Leave)
}
