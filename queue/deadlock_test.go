package queue

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestSyncOntoTheRunningQueuePanicsAndSyncContextErrs(t *testing.T) {
	q := NewSerial("self")
	errs := make(chan error, 1)
	panics := make(chan any, 1)
	q.Async(func() {
		errs <- q.SyncContext(context.Background(), func(context.Context) {})
		defer func() { panics <- recover() }()
		q.Sync(func() {})
	})
	err := testutil.Recv(t, errs, "SyncContext onto the running queue")
	require.ErrorIs(t, err, ErrWouldDeadlock)
	require.Contains(t, err.Error(), `"self"`)
	p := testutil.Recv(t, panics, "Sync onto the running queue")
	require.NotNil(t, p)
	require.Contains(t, p.(string), `"self"`)
	syncDone(t, q) // the queue is not wedged
}

func TestNestedSyncOntoTheSameQueueIsCaught(t *testing.T) {
	q := NewSerial("outer")
	var err error
	q.Sync(func() { err = q.SyncContext(context.Background(), func(context.Context) {}) })
	require.ErrorIs(t, err, ErrWouldDeadlock)
}

func TestSyncOntoAQueueThatNeedsTheCallersSerialTargetIsCaught(t *testing.T) {
	root := NewSerial("root")
	a := NewSerial("a", WithTarget(root))
	b := NewSerial("b", WithTarget(root))
	errs := make(chan error, 1)
	a.Async(func() { errs <- b.SyncContext(context.Background(), func(context.Context) {}) })
	err := testutil.Recv(t, errs, "Sync onto a sibling under the same serial target")
	require.ErrorIs(t, err, ErrWouldDeadlock)
	require.Contains(t, err.Error(), `"root"`)
}

func TestBarrierSyncFromInsideTheConcurrentQueueIsCaught(t *testing.T) {
	q := NewConcurrent("c", WithWidth(4))
	errs := make(chan error, 2)
	q.Async(func() {
		errs <- q.SyncContext(context.Background(), func(context.Context) {}) // a slot: fine
		errs <- q.syncRun(context.Background(), true, func() {}, nil)
	})
	require.NoError(t, testutil.Recv(t, errs, "Sync onto own concurrent queue"))
	require.ErrorIs(t, testutil.Recv(t, errs, "BarrierSync onto own concurrent queue"), ErrWouldDeadlock)
}

func TestSyncAcrossQueuesFromBlocksDoesNotExhaustTheExecutor(t *testing.T) {
	withProcs(t, 1)
	_ = Global(Default).Width() // one worker
	busy := NewSerial("busy")
	caller := NewSerial("caller")
	release := make(chan struct{})
	busy.Async(func() { <-release })
	done := make(chan struct{})
	// The only worker runs caller's block, which waits in Sync for busy; busy's queued work
	// needs a worker too. The executor lends one while the first waits.
	caller.Async(func() {
		busy.Sync(func() {})
		close(done)
	})
	close(release)
	testutil.Recv(t, done, "a Sync made from the executor's only worker")
}

func TestIsCurrent(t *testing.T) {
	parent := NewConcurrent("parent")
	child := NewSerial("child", WithTarget(parent))
	require.False(t, child.IsCurrent())
	res := make(chan [3]bool, 1)
	child.Async(func() { res <- [3]bool{child.IsCurrent(), parent.IsCurrent(), NewSerial("x").IsCurrent()} })
	got := testutil.Recv(t, res, "IsCurrent from a block")
	require.Equal(t, [3]bool{true, true, false}, got)
	in := false
	parent.Sync(func() { in = parent.IsCurrent() })
	require.True(t, in)
	onRoot := make(chan bool, 1)
	Global(Default).Async(func() { onRoot <- Global(Default).IsCurrent() })
	require.True(t, testutil.Recv(t, onRoot, "IsCurrent on a Global"))
}
