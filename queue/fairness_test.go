package queue

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A flooded queue cannot starve a sibling on a serial target: the sibling's drain sits in
// the target drainer's private batch, and the flooded drain must see it there and yield
// after a batch. What the test counts is how many of the flood's blocks ran before the
// sibling's one block: a batch or two, not all 200,000.
func TestAFloodedQueueDoesNotStarveASiblingOnASerialTarget(t *testing.T) {
	const flood = 200_000
	target := NewSerial("target", Inactive()) // both drains wait in it, then go in one batch
	flooded := NewSerial("flooded", WithTarget(target))
	sibling := NewSerial("sibling", WithTarget(target))
	ran := 0 // guarded by target: every block here runs on it
	for range flood {
		flooded.Async(func() { ran++ })
	}
	seen := make(chan int, 1)
	sibling.Async(func() { seen <- ran })
	target.Activate()
	got := testutil.Recv(t, seen, "the sibling's block")
	require.LessOrEqual(t, got, 2*batchSize, "flood blocks that ran before the sibling's")
	syncDone(t, flooded)
}

// The same one level up: the flooded queue's target is alone on its own target, where the
// sibling waits. The flooded drain looks up the whole chain, so the sibling waits for at most
// a batch of the flood's drains (each a batch of blocks), not for the whole flood.
func TestAFloodedQueueYieldsToContentionHigherUpItsChain(t *testing.T) {
	const flood = 200_000
	top := NewSerial("top", Inactive())
	middle := NewSerial("middle", WithTarget(top))
	flooded := NewSerial("flooded", WithTarget(middle))
	sibling := NewSerial("sibling", WithTarget(top))
	ran := 0 // guarded by top
	for range flood {
		flooded.Async(func() { ran++ })
	}
	seen := make(chan int, 1)
	sibling.Async(func() { seen <- ran })
	top.Activate()
	got := testutil.Recv(t, seen, "the sibling's block")
	require.LessOrEqual(t, got, (batchSize+1)*batchSize, "flood blocks that ran before the sibling's")
	syncDone(t, flooded)
}
