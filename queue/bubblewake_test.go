package queue

import (
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// floodOnce makes q's drainer take a batch of more than floodBatch blocks at once (q is
// suspended while they are queued), waits until they ran, and then takes q with a Sync.
func floodOnce(t *testing.T, q *Queue) {
	const n = int(floodBatch) + 100
	q.Suspend()
	ran := make(chan int, 1)
	count := 0 // guarded by q
	for range n {
		q.Async(func() {
			if count++; count == n {
				ran <- count
			}
		})
	}
	q.Resume()
	require.Equal(t, n, testutil.Recv(t, ran, "the flood"))
	q.Sync(func() {})
}

// A queue flooded inside a synctest bubble and later outside it: what the drainer sleeps on
// between batches must not be the bubble's (a goroutine outside a bubble that touches a
// bubble's channel is a fatal error).
func TestAQueueFloodedInABubbleAndThenOutside(t *testing.T) {
	q := NewSerial("flooded-twice")
	synctest.Test(t, func(t *testing.T) { floodOnce(t, q) })
	floodOnce(t, q)
	syncDone(t, q)
}
