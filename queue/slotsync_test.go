package queue

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// fastHeld reports, inside a Sync block of q, whether the caller took q with the hold word's
// CAS (the short ways) rather than under the lock (the general path).
func fastHeld(q *Queue) bool {
	h := q.hold.Load()
	return h&holdFast != 0 && uintptr(h>>holdShift) == goid.G()
}

// A Sync onto an idle serial queue whose target is a concurrent queue on a root, with a free
// slot, takes the serial queue with the hold word's CAS and a slot of the target (syncSlot).
// Inside, both are the caller's as on the general path: IsCurrent on the queue, its target
// and the root, one slot of the target running, a nested Sync onto the queue a deadlock, a
// nested Sync onto a sibling run in the slot held. After, both are given back.
func TestASyncOntoASerialQueueOnAConcurrentOneTakesASlotAtOnce(t *testing.T) {
	c := NewConcurrent("slot-sync-c", WithWidth(2))
	q := NewSerial("slot-sync-q", WithTarget(c))
	sib := NewSerial("slot-sync-sib", WithTarget(c))
	root := c.Target()
	for _, withCtx := range []bool{false, true} {
		var fast, onQ, onC, onRoot, inSib bool
		var running int
		var nested error
		block := func() {
			fast, onQ, onC, onRoot = fastHeld(q), q.IsCurrent(), c.IsCurrent(), root.IsCurrent()
			running = c.Stats().Running
			nested = q.SyncContext(t.Context(), func(context.Context) {})
			sib.Sync(func() { inSib = c.IsCurrent() && c.Stats().Running == 1 })
		}
		if withCtx {
			require.NoError(t, q.SyncContext(t.Context(), func(context.Context) { block() }))
		} else {
			q.Sync(block)
		}
		require.True(t, fast, "ctx %v: the short way", withCtx)
		require.True(t, onQ && onC && onRoot, "ctx %v: IsCurrent on the queue, its target and the root", withCtx)
		require.Equal(t, 1, running, "ctx %v: one slot of the target", withCtx)
		require.ErrorIs(t, nested, ErrWouldDeadlock)
		require.True(t, inSib, "ctx %v: a nested Sync onto a sibling runs in the slot held", withCtx)
		require.Zero(t, q.hold.Load()&^holdCount)
		require.Zero(t, c.Stats().Running)
		require.False(t, root.IsCurrent())
	}
}

// A block that panics inside the short way gives back the slot and the queue.
func TestASlotSyncThatPanicsGivesBackTheSlotAndTheQueue(t *testing.T) {
	c := NewConcurrent("slot-panic-c", WithWidth(1))
	q := NewSerial("slot-panic-q", WithTarget(c))
	var fast bool
	require.PanicsWithValue(t, "boom", func() {
		q.Sync(func() {
			fast = fastHeld(q)
			panic("boom")
		})
	})
	require.True(t, fast)
	require.Zero(t, q.hold.Load()&^holdCount)
	require.Zero(t, c.Stats().Running)
	// The only slot is free again: a Sync and an Async run.
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	testutil.Recv(t, ran, "an Async after the panic")
	q.Sync(func() {})
}

// The short way keeps the observer's hooks and the queue's specifics.
func TestASlotSyncTellsTheObserverAndSeesSpecifics(t *testing.T) {
	defer specificsUsed.Store(specificsUsed.Load())
	r := &recorder{}
	c := NewConcurrent("slot-obs-c", WithWidth(2))
	q := NewSerial("slot-obs-q", WithTarget(c), WithObserver(r))
	k := NewKey[int]("slot-obs")
	SetSpecific(q, k, 7)
	var fast bool
	var v int
	var ok bool
	q.Sync(func() { fast = fastHeld(q); v, ok = GetSpecific(q, k) })
	require.True(t, fast)
	require.True(t, ok)
	require.Equal(t, 7, v)
	require.Contains(t, r.list(), "started slot-obs-q sync enq=slot-obs-q")
	require.Contains(t, r.list(), "finished slot-obs-q sync span=span-slot-obs-q panic=<nil>")
}

// syncWaits starts a Sync onto q, waits until it has taken q, and checks that it has not run
// (it waits on the general path); it returns a channel that reports, once the Sync has returned, whether its block
// found q taken with the lock (not the short way). Sent from the block, it could come while
// the Sync still held its target's slot.
func syncWaits(t *testing.T, q *Queue, what string) <-chan bool {
	t.Helper()
	done := make(chan bool, 1)
	go func() {
		var general bool
		q.Sync(func() { general = !fastHeld(q) })
		done <- general // once Sync returned: what it held is given back
	}()
	// Until the caller has taken q on the general path (it takes q under the lock, then
	// waits for the target), "not run yet" would prove nothing: the goroutine may not have
	// called Sync at all, or be trying the short way (holdFast), which it gives up.
	waitFor(t, what+" to take its queue", func() bool {
		h := q.hold.Load()
		return h != 0 && h&holdFast == 0 || len(done) > 0
	})
	notYet(t, done, what)
	return done
}

// Each condition that must keep a Sync off the short way sends it to the general path: the
// target suspended, at its width, running a barrier, or with a block queued (a Sync never
// overtakes one).
func TestASlotSyncFallsBackWhenTheTargetHasNoFreeSlot(t *testing.T) {
	t.Run("suspended", func(t *testing.T) {
		c := NewConcurrent("slot-susp-c", WithWidth(2))
		q := NewSerial("slot-susp-q", WithTarget(c))
		c.Suspend()
		done := syncWaits(t, q, "a Sync under a suspended target")
		c.Resume()
		require.True(t, testutil.Recv(t, done, "the Sync after Resume"))
	})
	// A block holding the only slot (width 1), or a barrier running: the Sync waits for it.
	for _, tc := range []struct {
		name, holder string
		width        int
		hold         func(c *Queue, block func())
	}{
		{"full", "the block holding the only slot", 1, (*Queue).Async},
		{"barrier", "the barrier", 4, (*Queue).BarrierAsync},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConcurrent("slot-"+tc.name+"-c", WithWidth(tc.width))
			q := NewSerial("slot-"+tc.name+"-q", WithTarget(c))
			g := newGate()
			tc.hold(c, g.block)
			testutil.Recv(t, g.started, tc.holder)
			done := syncWaits(t, q, "a Sync under "+tc.holder)
			g.open()
			require.True(t, testutil.Recv(t, done, "the Sync once "+tc.holder+" is done"))
		})
	}
	t.Run("queued", func(t *testing.T) {
		c := NewConcurrent("slot-queued-c", WithWidth(2))
		q := NewSerial("slot-queued-q", WithTarget(c))
		g := newGate()
		c.Async(g.block)
		testutil.Recv(t, g.started, "the block holding one slot")
		barrier := make(chan struct{})
		c.BarrierAsync(func() { close(barrier) }) // waits for g, queued: a slot is free
		waitFor(t, "the barrier to be queued", func() bool { return c.Stats().Pending == 1 })
		done := syncWaits(t, q, "a Sync behind a queued barrier")
		g.open()
		testutil.Recv(t, barrier, "the barrier")
		require.True(t, testutil.Recv(t, done, "the Sync after the barrier"))
	})
}

// A caller that already holds part of the target keeps the general path's answers: from a
// block of the target (or of a queue under it) the Sync runs in the slot held, taking no
// second one; from a barrier of the target it would wait for itself (ErrWouldDeadlock).
func TestASlotSyncFallsBackWhenTheCallerHoldsTheTarget(t *testing.T) {
	c := NewConcurrent("slot-held-c", WithWidth(2))
	q := NewSerial("slot-held-q", WithTarget(c))
	other := NewSerial("slot-held-other", WithTarget(c))
	var fast bool
	running := 0
	c.Sync(func() { q.Sync(func() { fast, running = fastHeld(q), c.Stats().Running }) })
	require.False(t, fast, "from a Sync onto the target")
	require.Equal(t, 1, running, "the slot held, no second one")
	done := make(chan [2]int, 1)
	c.Async(func() {
		q.Sync(func() { done <- [2]int{boolInt(fastHeld(q)), c.Stats().Running} })
	})
	require.Equal(t, [2]int{0, 1}, testutil.Recv(t, done, "from a block of the target"))
	// That block still holds its slot as it sends: wait until it gives it back.
	waitFor(t, "the target's block to end", func() bool { return c.Stats().Running == 0 })
	other.Sync(func() { q.Sync(func() { fast, running = fastHeld(q), c.Stats().Running }) })
	require.False(t, fast, "from a Sync onto a sibling")
	require.Equal(t, 1, running, "the sibling's slot, no second one")

	var err error
	c.BarrierSync(func() { err = q.SyncContext(t.Context(), func(context.Context) {}) })
	require.ErrorIs(t, err, ErrWouldDeadlock)
	require.Zero(t, q.hold.Load()&^holdCount)
	require.Zero(t, c.Stats().Running)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A concurrent target that is not on a root (a chain) sends the Sync to the general path,
// which holds the whole chain: the slot taken is given back.
func TestASlotSyncFallsBackOnALongerChain(t *testing.T) {
	top := NewSerial("slot-chain-top")
	c := NewConcurrent("slot-chain-c", WithWidth(2), WithTarget(top))
	q := NewSerial("slot-chain-q", WithTarget(c))
	var fast, onTop bool
	q.Sync(func() { fast, onTop = fastHeld(q), top.IsCurrent() })
	require.False(t, fast)
	require.True(t, onTop)
	require.Zero(t, c.Stats().Running)

	g := newGate()
	go top.Sync(g.block)
	testutil.Recv(t, g.started, "a Sync holding the chain's top")
	done := syncWaits(t, q, "a Sync whose chain's top is held")
	g.open()
	require.True(t, testutil.Recv(t, done, "the Sync once the top is free"))
	require.Zero(t, c.Stats().Running)
}

// BenchmarkSyncContextSerialOnConcurrent is the inline handler's Sync in wsserver: a
// SyncContext onto an idle serial queue whose target is a concurrent queue on a root.
func BenchmarkSyncContextSerialOnConcurrent(b *testing.B) {
	c := NewConcurrent("bench-slot-c", WithWidth(64))
	q := NewSerial("bench-slot-q", WithTarget(c), WithProfileLabels(false))
	ctx := context.Background()
	n := 0
	fn := func(context.Context) { n++ }
	b.ReportAllocs()
	for b.Loop() {
		_ = q.SyncContext(ctx, fn)
	}
}
