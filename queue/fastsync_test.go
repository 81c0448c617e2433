package queue

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// An uncontended Sync takes an idle serial queue and gives it back without its lock: it
// completes while another goroutine holds q.mu. Inside, the queue is the caller's as with a
// locked Sync: IsCurrent, AssertBarrier, Stats and a nested Sync's deadlock check see it.
func TestAnUncontendedSyncTakesAndGivesBackTheQueueWithoutTheLock(t *testing.T) {
	q := NewSerial("fast-sync")
	q.mu.Lock()
	locked := true
	defer func() {
		if locked {
			q.mu.Unlock()
		}
	}()
	done := make(chan uint64, 1)
	go func() {
		var h uint64
		q.Sync(func() { h = q.hold.Load() })
		done <- h
	}()
	h := testutil.Recv(t, done, "a Sync onto an idle queue whose lock is held")
	q.mu.Unlock()
	locked = false
	require.NotZero(t, h&holdFast, "taken without the lock")
	require.Zero(t, q.hold.Load()&^holdCount, "given back idle")

	q.Sync(func() {
		require.True(t, q.IsCurrent())
		AssertBarrier(q)
		require.Equal(t, 1, q.Stats().Running)
		require.Equal(t, goid.G(), uintptr(q.hold.Load()>>holdShift))
		require.ErrorIs(t, q.SyncContext(t.Context(), func(context.Context) {}), ErrWouldDeadlock)
	})
	require.Zero(t, q.hold.Load()&^holdCount)

	// A queue under a serial target needs its target too: the general path, under the lock.
	mid := NewSerial("fast-sync-mid")
	leaf := NewSerial("fast-sync-leaf", WithTarget(mid))
	leaf.Sync(func() {
		require.True(t, mid.IsCurrent())
		require.Zero(t, leaf.hold.Load()&holdFast)
	})
	require.Zero(t, leaf.hold.Load()&^holdCount)
	require.Zero(t, mid.hold.Load()&^holdCount)
}

// A block submitted while an uncontended Sync holds the queue waits for it, and its release,
// which finds the block queued, starts a drainer for it.
func TestAnAsyncDuringAnUncontendedSyncRunsAfterIt(t *testing.T) {
	q := NewSerial("fast-sync-async")
	var inSync atomic.Bool
	ran := make(chan bool, 1)
	q.Sync(func() {
		inSync.Store(true)
		accepted := make(chan struct{})
		go func() {
			q.Async(func() { ran <- inSync.Load() })
			close(accepted)
		}()
		testutil.Recv(t, accepted, "the Async's acceptance")
		require.Equal(t, holdQueued, q.hold.Load()&holdQueued, "the Async marked the Sync's release")
		inSync.Store(false)
	})
	require.False(t, testutil.Recv(t, ran, "the block queued during the Sync"), "it ran inside the Sync")
	syncDone(t, q)
}

// A Sync caller that waits behind an uncontended Sync, after a block queued before it, gets
// the queue after that block: the release goes through the lock and hands the queue on in order.
func TestASyncWaitingBehindAnUncontendedSyncGetsTheQueueInOrder(t *testing.T) {
	q := NewSerial("fast-sync-waiter")
	order := make(chan string, 2)
	waited := make(chan struct{})
	q.Sync(func() {
		q.Async(func() { order <- "block" })
		go func() {
			q.Sync(func() { order <- "sync" })
			close(waited)
		}()
		waitFor(t, "the second Sync to queue", func() bool {
			q.mu.Lock()
			defer q.mu.Unlock()
			return q.items.n == 2
		})
	})
	require.Equal(t, "block", testutil.Recv(t, order, "the first"))
	require.Equal(t, "sync", testutil.Recv(t, order, "the second"))
	testutil.Recv(t, waited, "the second Sync's return")
}

// A Suspend inside an uncontended Sync holds back what was queued during it: the release
// leaves the queue idle and stopped, and Resume starts the block.
func TestSuspendInsideAnUncontendedSyncHoldsBackItsQueuedBlocks(t *testing.T) {
	q := NewSerial("fast-sync-suspend")
	ran := make(chan struct{})
	q.Sync(func() {
		q.Suspend()
		q.Async(func() { close(ran) })
	})
	q.mu.Lock()
	require.Equal(t, holdStopped, q.hold.Load(), "idle and stopped, no drainer")
	require.EqualValues(t, 1, q.items.n)
	q.mu.Unlock()
	q.Resume()
	testutil.Recv(t, ran, "the block after Resume")
}

// Uncontended Syncs racing Asyncs on one queue: every block runs once, none is stranded by a
// release that missed it (each lost wake-up would hang the final wait).
func TestUncontendedSyncsRacingAsyncsStrandNoBlock(t *testing.T) {
	q := NewSerial("fast-sync-race")
	const n = 5000
	var ran, syncs atomic.Int64
	stop := make(chan struct{})
	synced := make(chan struct{})
	go func() {
		defer close(synced)
		for {
			select {
			case <-stop:
				return
			default:
			}
			q.Sync(func() { syncs.Add(1) })
		}
	}()
	for range n {
		q.Async(func() { ran.Add(1) })
		if ran.Load()%64 == 0 {
			runtime.Gosched()
		}
	}
	syncDone(t, q)
	close(stop)
	testutil.Recv(t, synced, "the Sync loop")
	require.EqualValues(t, n, ran.Load())
	require.Zero(t, q.hold.Load()&^holdCount)
}

// waitFor polls cond (yielding between looks) until it holds, failing after testutil.Wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testutil.Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", testutil.Wait, what)
		}
		runtime.Gosched()
	}
}

// An Async onto an idle serial queue hands it its block without the lock, and the drainer
// runs that block alone and gives the queue back without it too (a lone episode): the block
// runs and the queue goes idle while another goroutine holds q.mu, and it counts as accepted
// and executed.
func TestAnAsyncOntoAnIdleQueueTakesNoLock(t *testing.T) {
	q := NewSerial("fast-first")
	ran := make(chan struct{})
	q.mu.Lock()
	go q.Async(func() { close(ran) })
	testutil.Recv(t, ran, "the block, while the queue's lock is held")
	waitFor(t, "the queue to go idle", func() bool { return idleWord(q.hold.Load()) })
	q.mu.Unlock()
	syncDone(t, q)
	require.Zero(t, q.hold.Load()&^holdCount)
	s := q.Stats()
	require.EqualValues(t, 1, s.Executed)
	require.Zero(t, s.Pending)
}

// behindAHeldTarget returns a queue whose drains cannot start (its serial target is held by
// a Sync that waits for the gate) with one block handed to it without the lock.
func behindAHeldTarget(t *testing.T, label string, fn func()) (*Queue, *gate) {
	t.Helper()
	target := NewSerial(label + "-target")
	g := newGate()
	go target.Sync(g.block)
	testutil.Recv(t, g.started, "the Sync holding the target")
	q := NewSerial(label, WithTarget(target))
	q.Async(fn)
	require.Equal(t, holdBusy|holdFirst, q.hold.Load(), "the block went in without the lock")
	return q, g
}

// Close waits for a block handed to an idle queue without the lock even before its drainer
// has counted it, and Stats shows it pending.
func TestCloseWaitsForABlockHandedToAnIdleQueueWithoutTheLock(t *testing.T) {
	ran := make(chan struct{})
	q, g := behindAHeldTarget(t, "fast-first-close", func() { close(ran) })
	require.Equal(t, 1, q.Stats().Pending)
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	waitFor(t, "Close to begin", q.Closed)
	q.mu.Lock()
	fired := q.ext.closeFired
	q.mu.Unlock()
	require.False(t, fired, "Close counted no block left while one waited for its drainer")
	notYet(t, closed, "Close")
	g.open()
	testutil.Recv(t, ran, "the block")
	require.NoError(t, testutil.Recv(t, closed, "Close"))
	require.EqualValues(t, 1, q.Stats().Executed)
}

// A Suspend between an Async's lock-free hand-over and its drainer's start holds the block
// back: the drainer puts it in line and leaves the queue idle and stopped; Resume runs it.
func TestSuspendBeforeTheDrainerStartsHoldsBackAFirstBlock(t *testing.T) {
	ran := make(chan struct{})
	q, g := behindAHeldTarget(t, "fast-first-suspend", func() { close(ran) })
	q.Suspend()
	g.open()
	waitFor(t, "the drainer to give the queue back", func() bool { return q.hold.Load()&holdBusy == 0 })
	q.mu.Lock()
	require.Equal(t, holdStopped, q.hold.Load())
	require.EqualValues(t, 1, q.items.n, "the block waits in line")
	require.EqualValues(t, 1, q.acc, "counted by its drainer")
	q.mu.Unlock()
	notYet(t, ran, "the block of a suspended queue")
	q.Resume()
	testutil.Recv(t, ran, "the block after Resume")
}

// A plain Sync (no observer, no specifics) whose block panics or calls Goexit still gives
// back all it took: the queue, the caller's mark for IsCurrent on the root, and the caller's
// profiler labels.
func TestAPlainSyncThatPanicsOrExitsGivesBackWhatItTook(t *testing.T) {
	q := NewSerial("plain-sync-exit")
	root := q.Target()
	labelled := func() bool {
		var buf bytes.Buffer
		require.NoError(t, pprof.Lookup("goroutine").WriteTo(&buf, 1))
		return strings.Contains(buf.String(), `"queue":"plain-sync-exit"`)
	}
	var inside bool
	require.PanicsWithValue(t, "boom", func() {
		q.Sync(func() {
			inside = root.IsCurrent() && labelled() && q.hold.Load()&holdFast != 0
			panic("boom")
		})
	})
	require.True(t, inside, "the block ran on the plain path, on the root, under the label")
	require.False(t, root.IsCurrent(), "the caller still counts as running on the root")
	require.False(t, labelled(), "the caller kept the queue's label")
	require.Zero(t, q.hold.Load()&^holdCount, "the queue was not given back")

	var g uintptr
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		q.Sync(func() {
			g = goid.G()
			runtime.Goexit()
		})
	}()
	testutil.Recv(t, exited, "the goroutine whose Sync block called Goexit")
	require.Zero(t, q.hold.Load()&^holdCount, "the queue was not given back")
	for i := range syncTable {
		require.NotEqual(t, g, syncTable[i].g.Load(), "the exited goroutine kept its IsCurrent mark")
	}
	ran := false
	q.Sync(func() { ran = true })
	require.True(t, ran)
}

// spinHook sets syncSpinHook for the test: each turn of a Sync caller's spin calls turn.
func spinHook(t *testing.T, turn func()) {
	t.Helper()
	syncSpinHook.Store(&turn)
	t.Cleanup(func() { syncSpinHook.Store(nil) })
}

// A Sync caller that finds the queue held by another Sync caller spins on the hold word and
// takes the queue with its CAS once the holder gives it back: no lock, no yield, no park.
// Here the lock is held throughout: a caller that took the locked path would hang.
func TestASyncSpinsForASyncCallerAndTakesTheQueueWithoutTheLock(t *testing.T) {
	withProcs(t, 2) // with one P the holder could not finish while the caller spins
	q := NewSerial("spin")
	first := newGate()
	go q.Sync(first.block)
	testutil.Recv(t, first.started, "the first Sync")
	spinning, proceed := make(chan struct{}), make(chan struct{})
	var turns atomic.Int32
	spinHook(t, func() {
		if turns.Add(1) == 1 {
			close(spinning)
			select { // until the first Sync has given the queue back
			case <-proceed:
			case <-time.After(testutil.Wait):
			}
		}
	})
	second := make(chan uint64, 1)
	go q.Sync(func() { second <- q.hold.Load() })
	testutil.Recv(t, spinning, "the second Sync's spin")
	q.mu.Lock()
	defer q.mu.Unlock()
	first.open()
	waitFor(t, "the first Sync to give the queue back", func() bool { return idleWord(q.hold.Load()) })
	close(proceed)
	h := testutil.Recv(t, second, "the second Sync, taken by its spin while the lock is held")
	require.NotZero(t, h&holdFast, "held without the lock")
	waitFor(t, "the second Sync to give the queue back", func() bool { return idleWord(q.hold.Load()) })
}

// A Sync caller never spins past what waits in line (a block queued behind a Sync holder),
// nor with one P: it waits in line, after the block.
func TestASyncDoesNotSpinPastAQueuedBlockNorOnOneP(t *testing.T) {
	for _, procs := range []int{2, 1} {
		t.Run(fmt.Sprint(procs, "P"), func(t *testing.T) {
			withProcs(t, procs)
			q := NewSerial("no-spin")
			var turns atomic.Int32
			spinHook(t, func() { turns.Add(1) })
			first := newGate()
			go q.Sync(first.block)
			testutil.Recv(t, first.started, "the first Sync")
			order := make(chan string, 2)
			if procs == 2 {
				q.Async(func() { order <- "async" })
			}
			synced := make(chan struct{})
			go func() {
				q.Sync(func() { order <- "sync" })
				close(synced)
			}()
			waiting := 1
			if procs == 2 {
				waiting = 2
			}
			require.Eventually(t, func() bool {
				q.mu.Lock()
				defer q.mu.Unlock()
				return int(q.items.n) == waiting
			}, waitTimeout, 100_000, "the Sync waits in line")
			require.Zero(t, turns.Load(), "the Sync caller spun")
			first.open()
			testutil.Recv(t, synced, "the Sync")
			if procs == 2 {
				require.Equal(t, "async", <-order)
			}
			require.Equal(t, "sync", <-order)
		})
	}
}

// A plain Sync's caller counts as running on the queue's root inside the block (nested
// across two roots too), and neither after it nor on another goroutine while the block runs.
func TestAPlainSyncsIsCurrentMarkIsOnlyItsCallersOwn(t *testing.T) {
	defer specificsUsed.Store(specificsUsed.Swap(false)) // the plain path; no test runs beside this one
	outer := NewSerial("mark-outer", WithTarget(Global(Utility)))
	inner := NewSerial("mark-inner", WithTarget(Global(Background)))
	var in [4]bool
	outer.Sync(func() {
		in[0] = outer.hold.Load()&holdFast != 0 // the plain path
		inner.Sync(func() {
			in[1] = Global(Utility).IsCurrent() && Global(Background).IsCurrent()
			AssertOn(Global(Utility))
			in[2] = Global(Default).IsCurrent()
		})
		in[3] = Global(Utility).IsCurrent() && !Global(Background).IsCurrent()
	})
	require.Equal(t, [4]bool{true, true, false, true}, in)
	require.False(t, Global(Utility).IsCurrent(), "the caller still counts as running on the root")

	// Another goroutine's plain Sync, running now, is not the caller's.
	g := newGate()
	done := make(chan struct{})
	go func() {
		defer close(done)
		outer.Sync(g.block)
	}()
	testutil.Recv(t, g.started, "the other goroutine's Sync block")
	held := outer.hold.Load()
	onUtility := Global(Utility).IsCurrent()
	g.open()
	testutil.Recv(t, done, "the other goroutine's Sync")
	require.NotZero(t, held&holdFast, "the other goroutine took the queue on the plain path: %#x", held)
	require.False(t, onUtility, "another goroutine's Sync made the caller current on the root")
}

// A plain Sync's mark is its caller's stack (a frame of its root's onRoot function), not a
// slot of syncTable: IsCurrent on the root finds it however deep the block's own calls go,
// and finds it for every root.
func TestAPlainSyncsMarkIsTheCallersStack(t *testing.T) {
	defer specificsUsed.Store(specificsUsed.Swap(false)) // the plain path; no test runs beside this one
	seen := map[string]bool{}
	for _, name := range onRootName {
		require.Contains(t, name, "queue.onRoot")
		seen[name] = true
	}
	require.Len(t, seen, numQoS, "two roots share an onRoot function")
	me := goid.G()
	for k := range numQoS {
		root := Global(QoS(k))
		q := NewSerial(fmt.Sprintf("stack-mark-%d", k), WithTarget(root))
		var in [3]bool
		q.Sync(func() {
			for i := range syncTable {
				if syncTable[i].g.Load() == me {
					in[0] = true // a slot: not the plain path's mark
				}
			}
			in[1] = root.IsCurrent()
			// 300 frames down: past several of onRootInStack's 64-frame reads.
			var down func(n int) bool
			down = func(n int) bool {
				if n == 0 {
					return root.IsCurrent()
				}
				return down(n - 1)
			}
			in[2] = down(300)
		})
		require.Equal(t, [3]bool{false, true, true}, in, "root %v", QoS(k))
		require.False(t, root.IsCurrent(), "root %v after the Sync", QoS(k))
	}
}

// A SyncContext, and a Sync while specifics are in use (both run their block through
// syncRunHeld), that took the queue with the hold word's CAS mark the caller's stack too:
// the caller is on the root inside, takes no slot of syncTable, and is off the root after.
func TestASyncRunHeldOnAFastHoldMarksTheCallersStack(t *testing.T) {
	defer specificsUsed.Store(specificsUsed.Load()) // no test runs beside this one
	me := goid.G()
	inSlot := func() bool {
		for i := range syncTable {
			if syncTable[i].g.Load() == me {
				return true
			}
		}
		return false
	}
	for _, specifics := range []bool{false, true} {
		specificsUsed.Store(specifics)
		q := NewSerial(fmt.Sprintf("held-mark-%v", specifics), WithTarget(Global(Utility)))
		var in [3]bool
		require.NoError(t, q.SyncContext(t.Context(), func(context.Context) {
			in = [3]bool{q.hold.Load()&holdFast != 0, Global(Utility).IsCurrent(), inSlot()}
		}))
		require.Equal(t, [3]bool{true, true, false}, in, "SyncContext, specifics %v", specifics)
		in = [3]bool{}
		q.Sync(func() { in = [3]bool{q.hold.Load()&holdFast != 0, Global(Utility).IsCurrent(), inSlot()} })
		require.Equal(t, [3]bool{true, true, false}, in, "Sync, specifics %v", specifics)
		require.False(t, Global(Utility).IsCurrent())
	}
}
