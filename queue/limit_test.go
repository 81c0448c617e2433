package queue

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A block of a full limited queue that submits to its own queue would wait for room that
// only its own return can make: it is let in over the limit instead.
func TestFullLimitedQueueLetsItsOwnBlocksIn(t *testing.T) {
	q := NewSerial("self", WithLimit(1))
	done := make(chan struct{})
	refused := make(chan error, 1)
	submitted := make(chan error, 1)
	q.Async(func() {
		q.Async(func() {}) // fills the queue
		refused <- q.TryAsync(func() {})
		q.Async(func() {}) // over the limit: the room would come only after this block
		q.AsyncContext(context.Background(), func(context.Context) {})
		q.BarrierAsync(func() {})
		submitted <- q.Submit(context.Background(), func() {})
		q.Async(func() { close(done) })
	})
	require.ErrorIs(t, testutil.Recv(t, refused, "TryAsync on the full queue"), ErrFull)
	require.NoError(t, testutil.Recv(t, submitted, "Submit to its own full queue"))
	testutil.Recv(t, done, "the blocks a block submitted to its own full queue")
}

func TestFullLimitedQueueLetsInTheBlocksOfQueuesTargetingIt(t *testing.T) {
	q := NewConcurrent("limited", WithWidth(1), WithLimit(1))
	child := NewSerial("child", WithTarget(q))
	done := make(chan struct{})
	child.Async(func() {
		q.Async(func() {})
		q.Async(func() { close(done) })
	})
	testutil.Recv(t, done, "a child's block submitting to its full target")
}

// The limited queue's blocks need the serial target the caller is running on.
func TestFullLimitedQueueLetsInABlockOfItsSerialTarget(t *testing.T) {
	root := NewSerial("root")
	q := NewSerial("limited", WithTarget(root), WithLimit(1))
	sibling := NewSerial("sibling", WithTarget(root))
	done := make(chan struct{})
	sibling.Async(func() {
		q.Async(func() {})
		q.Async(func() { close(done) })
	})
	testutil.Recv(t, done, "a sibling's block submitting to a full queue on their serial target")
}

func TestSubmitReportsClosedInsteadOfPanicking(t *testing.T) {
	q := NewSerial("bounded", WithLimit(1))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	q.Async(func() {})
	errs := make(chan error, 1)
	ran := make(chan struct{}, 1)
	go func() { errs <- q.Submit(context.Background(), func() { ran <- struct{}{} }) }()
	notYet(t, errs, "Submit on a full queue")
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	require.ErrorIs(t, testutil.Recv(t, errs, "Submit waiting for room when Close is called"), ErrClosed)
	g.open()
	require.NoError(t, testutil.Recv(t, closed, "Close"))
	require.Empty(t, ran, "a refused block ran")
	require.ErrorIs(t, q.Submit(context.Background(), func() {}), ErrClosed)
}

func TestSubmitGivesUpWithItsContext(t *testing.T) {
	q := NewSerial("bounded", WithLimit(1))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	q.Async(func() {})
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- q.Submit(ctx, func() { t.Error("a refused block ran") }) }()
	notYet(t, errs, "Submit on a full queue")
	cancel()
	require.ErrorIs(t, testutil.Recv(t, errs, "Submit after its ctx ended"), context.Canceled)
	g.open()
	syncDone(t, q)
	require.NoError(t, q.Submit(context.Background(), func() {}))
	syncDone(t, q)
}
