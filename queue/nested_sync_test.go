package queue

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// nestedSync runs, from a block of from, a Sync and a SyncContext onto to, and reports what
// they saw: whether each ran on to, and SyncContext's error.
func nestedSync(t *testing.T, from, to *Queue) {
	t.Helper()
	type result struct {
		inSync, inCtx bool
		err           error
	}
	res := make(chan result, 1)
	from.Async(func() {
		var r result
		to.Sync(func() { r.inSync = to.IsCurrent() })
		r.err = to.SyncContext(context.Background(), func(context.Context) { r.inCtx = to.IsCurrent() })
		res <- r
	})
	r := testutil.Recv(t, res, "a nested Sync onto "+to.Label()+" from a block of "+from.Label())
	require.NoError(t, r.err)
	require.True(t, r.inSync)
	require.True(t, r.inCtx)
	syncDone(t, from)
	syncDone(t, to)
}

// A Sync from a block of a concurrent queue onto that queue runs at once in the caller's
// slot, as in GCD: the caller already holds what it would wait for.
func TestNestedSyncOntoAWidthOneConcurrentQueueRunsInline(t *testing.T) {
	c := NewConcurrent("c", WithWidth(1))
	nestedSync(t, c, c)
}

func TestNestedSyncOntoADefaultWidthConcurrentQueueAtOneCPURunsInline(t *testing.T) {
	withProcs(t, 1)
	c := NewConcurrent("c")
	require.Equal(t, 1, c.Width())
	nestedSync(t, c, c)
}

// wsserver's layout with HandlerWidth 1: connection queues (serial) on one shared width-1
// concurrent queue. A Sync from one connection's block onto another's idle queue runs in the
// caller's slot of the shared queue.
func TestSyncOntoAnIdleSiblingThroughTheCallersWidthOneTargetRunsInline(t *testing.T) {
	shared := NewConcurrent("handlers", WithWidth(1))
	a := NewSerial("a", WithTarget(shared))
	b := NewSerial("b", WithTarget(shared))
	nestedSync(t, a, b)
	// A queue that targets the caller's concurrent queue too.
	c := NewConcurrent("c", WithTarget(shared))
	d := NewSerial("d", WithTarget(c))
	nestedSync(t, c, d)
}

// The same Sync onto a sibling that has blocks waiting for the shared queue's only slot,
// which the caller holds: it could never get its turn. It is refused, not left hanging.
func TestSyncOntoABusySiblingThroughTheCallersOnlySlotIsRefused(t *testing.T) {
	shared := NewConcurrent("handlers", WithWidth(1))
	a := NewSerial("a", WithTarget(shared))
	b := NewSerial("b", WithTarget(shared))
	errs := make(chan error, 1)
	panics := make(chan any, 1)
	bRan := make(chan struct{})
	a.Async(func() {
		b.Async(func() { close(bRan) }) // waits for the slot a's block holds
		errs <- b.SyncContext(context.Background(), func(context.Context) {})
		defer func() { panics <- recover() }()
		b.Sync(func() {})
	})
	err := testutil.Recv(t, errs, "SyncContext onto a busy sibling")
	require.ErrorIs(t, err, ErrWouldDeadlock)
	require.Contains(t, err.Error(), `"handlers"`)
	p := testutil.Recv(t, panics, "Sync onto a busy sibling")
	require.NotNil(t, p)
	require.Contains(t, p.(string), `"b"`)
	testutil.Recv(t, bRan, "the sibling's block once the slot is free")
}

// The reader/writer pattern: a reader (a block of a concurrent queue) Syncs onto its queue
// after a writer (BarrierAsync) was queued. The writer waits for the reader's block; the
// reader's nested Sync runs in the reader's slot, so neither waits for the other.
func TestNestedSyncBehindABarrierThatWaitsForTheCallerRunsInline(t *testing.T) {
	c := NewConcurrent("rw", WithWidth(4))
	started := make(chan struct{})
	barrierQueued := make(chan struct{})
	synced := make(chan struct{})
	wrote := make(chan struct{})
	c.Async(func() {
		close(started)
		<-barrierQueued
		c.Sync(func() {})
		close(synced)
	})
	<-started
	c.BarrierAsync(func() {
		select {
		case <-synced:
		default:
			panic("the barrier ran before the block it waits for finished")
		}
		close(wrote)
	})
	close(barrierQueued)
	testutil.Recv(t, synced, "a nested Sync queued after a barrier that waits for its caller")
	testutil.Recv(t, wrote, "the barrier")
}

// A Sync made from inside a Sync holds a slot too.
func TestSyncInsideASyncOntoTheSameWidthOneQueueRunsInline(t *testing.T) {
	c := NewConcurrent("c", WithWidth(1))
	done := make(chan struct{})
	go c.Sync(func() { c.Sync(func() { close(done) }) })
	testutil.Recv(t, done, "a Sync inside a Sync onto a width-1 queue")
	syncDone(t, c)
	require.Equal(t, 0, c.Stats().Running)
}

// With DetectDeadlocks, a cycle through the only slot of a concurrent queue is caught: A's
// block holds X's only slot and Syncs onto S, whose block waits in Sync for X.
func TestDeadlockDetectionFollowsTheHolderOfAWidthOneQueue(t *testing.T) {
	x, s := NewConcurrent("X", WithWidth(1)), NewSerial("S")
	syncCycle(t, x, s, x, func() {})
}

// The same through a queue nobody holds: S's block waits for Y, whose blocks wait for X's
// only slot, which A's block holds.
func TestDeadlockDetectionFollowsAQueueWaitingForItsTarget(t *testing.T) {
	x, s := NewConcurrent("X", WithWidth(1)), NewSerial("S")
	y := NewSerial("Y", WithTarget(x))
	// Once X's only slot is taken, a block on Y makes Y's drain wait for it.
	syncCycle(t, x, s, y, func() { y.Async(func() {}) })
	syncDone(t, y)
}

// syncCycle has a block of a Sync onto s while a block of s waits in Sync for target; busy
// runs once both blocks have started.
func syncCycle(t *testing.T, a, s, target *Queue, busy func()) {
	t.Helper()
	DetectDeadlocks(true)
	t.Cleanup(func() { DetectDeadlocks(false) })
	aIn, sIn := newGate(), newGate()
	errA, errS := make(chan error, 1), make(chan error, 1)
	a.Async(func() {
		aIn.block()
		errA <- s.SyncContext(context.Background(), func(context.Context) {})
	})
	s.Async(func() {
		sIn.block()
		errS <- target.SyncContext(context.Background(), func(context.Context) {})
	})
	testutil.Recv(t, aIn.started, "a's block")
	testutil.Recv(t, sIn.started, "s's block")
	busy()
	sIn.open() // s's block now waits in Sync for target
	require.Eventually(t, func() bool {
		detectMu.Lock()
		defer detectMu.Unlock()
		return len(waitingFor) == 1
	}, waitTimeout, 100_000)
	aIn.open() // a's block Syncs onto s: a cycle
	err := testutil.Recv(t, errA, "a's Sync onto s")
	require.ErrorIs(t, err, ErrWouldDeadlock)
	require.Contains(t, err.Error(), `"`+s.Label()+`"`)
	require.Contains(t, err.Error(), `"`+target.Label()+`"`)
	require.NoError(t, testutil.Recv(t, errS, "s's Sync, once a's block gave up"))
}

// A Global root is current inside a Sync onto a queue whose chain ends at it, from any
// goroutine, and inside a block of a queue that targets it.
func TestGlobalIsCurrentFollowsTheTargetChain(t *testing.T) {
	q := NewSerial("q", WithQoS(Utility))
	child := NewSerial("child", WithTarget(q))
	var in [3]bool
	child.Sync(func() { in = [3]bool{Global(Utility).IsCurrent(), Global(Default).IsCurrent(), q.IsCurrent()} })
	require.Equal(t, [3]bool{true, false, true}, in)
	require.False(t, Global(Utility).IsCurrent())

	onRoot := false
	Global(Background).Sync(func() { onRoot = Global(Background).IsCurrent() })
	require.True(t, onRoot)

	// From a block running on Global(Default), inside a Sync onto the Utility chain: both.
	res := make(chan [3]bool, 1)
	NewSerial("d").Async(func() {
		var r [3]bool
		child.Sync(func() { r[0], r[1] = Global(Utility).IsCurrent(), Global(Default).IsCurrent() })
		r[2] = Global(Utility).IsCurrent()
		res <- r
	})
	require.Equal(t, [3]bool{true, true, false}, testutil.Recv(t, res, "IsCurrent from a block"))
}

// waitingInLine waits until q has n entries in line (a Sync caller waits there).
func waitingInLine(t *testing.T, q *Queue, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return int(q.items.n) == n
	}, waitTimeout, 100_000)
}

// A Sync waiting for an inactive queue that is then given a new target acquires the new
// chain, not the one it saw first.
func TestSyncWaitingOnAnInactiveQueueFollowsItsNewTarget(t *testing.T) {
	q := NewSerial("q", Inactive())
	p := NewSerial("p", WithQoS(Utility)) // a chain that ends at another root
	onP := make(chan bool, 1)
	errs := make(chan error, 1)
	go func() {
		errs <- q.SyncContext(context.Background(), func(context.Context) { onP <- p.IsCurrent() })
	}()
	waitingInLine(t, q, 1)
	require.NoError(t, q.SetTarget(p))
	q.Activate()
	require.NoError(t, testutil.Recv(t, errs, "the Sync onto the retargeted queue"))
	require.True(t, testutil.Recv(t, onP, "the Sync block"), "the Sync did not hold the new serial target")

}

// Under a target with a slot to spare, the same Sync onto a busy sibling waits for it.
func TestSyncOntoABusySiblingWaitsWhenTheTargetHasAnotherSlot(t *testing.T) {
	withProcs(t, 2)
	shared := NewConcurrent("handlers", WithWidth(2))
	a := NewSerial("a", WithTarget(shared))
	b := NewSerial("b", WithTarget(shared))
	g := newGate()
	b.Async(g.block)
	testutil.Recv(t, g.started, "the sibling's block")
	errs := make(chan error, 1)
	a.Async(func() { errs <- b.SyncContext(context.Background(), func(context.Context) {}) })
	notYet(t, errs, "a Sync onto a busy sibling")
	g.open()
	require.NoError(t, testutil.Recv(t, errs, "the Sync once the sibling is free"))
}
