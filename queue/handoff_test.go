package queue

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A block that makes an idle queue runnable hands its drain to its own worker (worker.local).
// These tests pin what must hold while a drain waits there: it never waits behind a block
// that does not end, it never jumps ahead of higher-class work, and it never leaves with a
// worker that stops being one.

// The block that handed a drain waits for it: another worker must take it, whether a
// spinner was looking for work when it was handed or not (then one is started, as Go's
// wakep). Many rounds cross the spinner's last look with the hand-off. Lending is off, so a
// lost hand-off hangs.
func TestAHandedDrainRunsWhileItsWorkerWaitsForIt(t *testing.T) {
	withProcs(t, 2)
	scarceWorkers(t)
	a, x := NewSerial("a"), NewSerial("x")
	for round := range 300 {
		ran, done := make(chan uintptr, 1), make(chan bool, 1)
		a.Async(func() {
			x.Async(func() { ran <- goid.G() }) // x is idle: its drain is handed to this worker
			select {
			case g := <-ran:
				done <- g != goid.G()
			case <-time.After(waitTimeout):
				done <- false
			}
		})
		require.True(t, testutil.Recv(t, done, "the block waiting for its handed drain"), "round %d", round)
		if round%50 == 0 {
			runtime.Gosched()
		}
	}
	syncDone(t, a)
}

// With one worker, a drain handed while higher-class work waits in the roots runs after it.
func TestAHandedDrainDoesNotPassHigherClassWork(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	low, idle := NewSerial("low", WithQoS(Background)), NewSerial("idle", WithQoS(Background))
	high := NewSerial("high", WithQoS(UserInteractive))
	g := newGate()
	order := make(chan string, 2)
	low.Async(func() {
		g.block()
		idle.Async(func() { order <- "handed" })
	})
	testutil.Recv(t, g.started, "the block holding the only worker")
	high.Async(func() { order <- "high" })
	g.open()
	require.Equal(t, "high", testutil.Recv(t, order, "the first block"))
	require.Equal(t, "handed", testutil.Recv(t, order, "the second block"))
}

// A worker that waits in a Sync gives up what it was handed: the worker that starts in its
// place runs it. Here that drain is what the Sync waits for.
func TestAWorkerWaitingInSyncGivesUpItsHandedDrain(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	x, y, a := NewSerial("x"), NewSerial("y"), NewSerial("a")
	xran, holding, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go y.Sync(func() { // holds y until x's block ran
		close(holding)
		<-xran
	})
	testutil.Recv(t, holding, "the Sync holding y")
	a.Async(func() {
		x.Async(func() { close(xran) }) // handed to this worker
		y.Sync(func() {})               // waits for the holder, which waits for x
		close(done)
	})
	testutil.Recv(t, done, "the Sync behind the handed drain")
	syncDone(t, y)
}

// A block that ends its worker with runtime.Goexit right after handing a drain: the worker
// leaves, and its replacement runs the drain.
func TestAHandedDrainOutlivesAGoexit(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	a, x := NewSerial("a"), NewSerial("x")
	ran := make(chan struct{})
	a.Async(func() {
		x.Async(func() { close(ran) })
		runtime.Goexit()
	})
	testutil.Recv(t, ran, "the drain handed before the Goexit")
	syncDone(t, a)
}

// A chain of queues passing work on, each hop handed to the one worker, lets a block waiting
// in the roots at the same class in after at most maxDirect hops; a block of a higher class
// goes first. The chain's tenth hop waits while the test submits the waiting block, so that
// the block is in its root before the eleventh hop is handed: the count starts at the
// submission. (Counting around a submission made by the test while the chain ran measured
// the test goroutine's wait for the one P as well: up to a few thousand hops under load.)
func TestAHandedChainLetsWaitingWorkIn(t *testing.T) {
	for _, tc := range []struct {
		qos    QoS
		within int64
	}{{Default, maxDirect}, {UserInteractive, 0}} {
		withProcs(t, 1)
		scarceWorkers(t) // the tenth hop holds the only worker: no other may take the root's block
		a, b := NewSerial("a"), NewSerial("b")
		var hops atomic.Int64
		stop := make(chan struct{})
		at10, resume := make(chan struct{}, 1), make(chan struct{})
		var hop func(next, other *Queue) func()
		hop = func(next, other *Queue) func() {
			return func() {
				if n := hops.Add(1); n == 10 {
					at10 <- struct{}{}
					<-resume
				}
				select {
				case <-stop:
				default:
					if hops.Load() < 100_000 {
						next.Async(hop(other, next))
					}
				}
			}
		}
		a.Async(hop(b, a))
		testutil.Recv(t, at10, "the chain's tenth hop")
		ran := make(chan int64, 1)
		NewSerial("waiting", WithQoS(tc.qos)).Async(func() { ran <- hops.Load() - 10 })
		close(resume)
		waited := testutil.Recv(t, ran, "the waiting block")
		close(stop)
		syncDone(t, a)
		syncDone(t, b)
		require.LessOrEqual(t, waited, tc.within, "hops run after the waiting block was submitted (%v)", tc.qos)
	}
}

// A worker that ends with runtime.Goexit while another worker's block waits for the drain
// it handed itself: that block found no room for a new worker (the two were all GOMAXPROCS
// allows) and relied on the one now leaving, which must take the drain to its root and start
// a worker for it, as a worker leaving for the CPU cap does.
func TestAWorkerEndedByGoexitLeavesNoHandedDrainBehind(t *testing.T) {
	withProcs(t, 2)
	scarceWorkers(t)
	d, a, x := NewSerial("d"), NewSerial("a"), NewSerial("x")
	dStarted, goexitNow := make(chan struct{}), make(chan struct{})
	d.Async(func() {
		close(dStarted)
		<-goexitNow
		runtime.Goexit()
	})
	testutil.Recv(t, dStarted, "the block that will end its worker")
	done := make(chan bool, 1)
	a.Async(func() {
		ran := make(chan struct{})
		x.Async(func() { close(ran) }) // handed to this worker; no room for another
		close(goexitNow)
		select {
		case <-ran:
			done <- true
		case <-time.After(waitTimeout):
			done <- false
		}
	})
	require.True(t, testutil.Recv(t, done, "the block waiting for its handed drain"),
		"the drain handed while the other worker left stayed in its worker's slot")
	syncDone(t, a)
	syncDone(t, d)
}

// Several drains handed by one block that waits for all of them: other workers take them
// from its ring (lending off: a drain left in the ring hangs the test).
func TestHandedDrainsRunWhileTheirWorkerWaitsForThem(t *testing.T) {
	withProcs(t, 2)
	scarceWorkers(t)
	a := NewSerial("a")
	qs := []*Queue{NewSerial("x"), NewSerial("y"), NewSerial("z")}
	for round := range 100 {
		ran, done := make(chan struct{}, len(qs)), make(chan bool, 1)
		a.Async(func() {
			for _, q := range qs {
				q.Async(func() { ran <- struct{}{} }) // idle: handed to this worker
			}
			timeout := time.After(waitTimeout)
			for range qs {
				select {
				case <-ran:
				case <-timeout:
					done <- false
					return
				}
			}
			done <- true
		})
		require.True(t, testutil.Recv(t, done, "the block waiting for its handed drains"), "round %d", round)
	}
	syncDone(t, a)
}

// A block that makes more queues runnable than its worker's ring holds: the ones beyond go
// to their root, and every one runs, on one worker.
func TestMoreHandedDrainsThanTheRingHoldsAllRun(t *testing.T) {
	withProcs(t, 1)
	scarceWorkers(t)
	const n = 3 * localSize
	qs := make([]*Queue, n)
	for i := range qs {
		qs[i] = NewSerial("q")
	}
	var ran atomic.Int32
	done := make(chan struct{})
	NewSerial("a").Async(func() {
		for _, q := range qs {
			q.Async(func() {
				if ran.Add(1) == n {
					close(done)
				}
			})
		}
	})
	testutil.Recv(t, done, "the handed drains")
	for _, q := range qs {
		syncDone(t, q)
	}
}
