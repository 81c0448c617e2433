package dispatch

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// withProcs runs the test with GOMAXPROCS at n, so that Global queues are n wide whatever the
// machine.
func withProcs(t *testing.T, n int) {
	old := runtime.GOMAXPROCS(n)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

func TestApplyRunsEveryIndexExactlyOnce(t *testing.T) {
	withProcs(t, 4)
	for _, q := range []*queue.Queue{
		queue.NewConcurrent("c"), queue.NewSerial("s"), queue.Global(queue.Default),
		queue.NewConcurrent("w3", queue.WithWidth(3)),
	} {
		for _, n := range []int{1, 2, 7, 100, 10_001} {
			counts := make([]atomic.Int32, n)
			Apply(q, n, func(i int) { counts[i].Add(1) })
			for i := range counts {
				require.EqualValues(t, 1, counts[i].Load(), "index %d of %d on %s", i, n, q.Label())
			}
		}
	}
	Apply(queue.NewSerial("s"), 0, func(int) { t.Fatal("n = 0 must run nothing") })
	Apply(queue.NewSerial("s"), -1, func(int) { t.Fatal("n < 0 must run nothing") })
}

func TestApplyReturnsOnlyAfterEveryIteration(t *testing.T) {
	withProcs(t, 4)
	q := queue.NewConcurrent("c")
	var running atomic.Int32
	for round := range 2000 {
		Apply(q, 16, func(int) {
			running.Add(1)
			runtime.Gosched()
			running.Add(-1)
		})
		require.Zero(t, running.Load(), "round %d: Apply returned with iterations running", round)
	}
}

func TestApplyRunsInParallelUpToTheWidth(t *testing.T) {
	withProcs(t, 4)
	q := queue.NewConcurrent("pair", queue.WithWidth(2))
	done := make(chan struct{})
	go func() {
		Apply(q, 2, needEachOther())
		close(done)
	}()
	testutil.Recv(t, done, "two iterations that need each other")

	var running, most atomic.Int32
	Apply(q, 200, func(int) {
		v := running.Add(1)
		for m := most.Load(); v > m && !most.CompareAndSwap(m, v); m = most.Load() {
		}
		runtime.Gosched()
		running.Add(-1)
	})
	require.LessOrEqual(t, most.Load(), int32(2), "more iterations at once than the width")
}

func TestApplyOnASerialQueueRunsInOrderOnTheQueue(t *testing.T) {
	q := queue.NewSerial("s")
	var got []int
	onQ := true
	Apply(q, 100, func(i int) {
		got = append(got, i)
		onQ = onQ && q.IsCurrent()
	})
	require.Len(t, got, 100)
	for i, v := range got {
		require.Equal(t, i, v)
	}
	require.True(t, onQ, "iterations of a serial Apply run as a block of the queue")
}

func TestApplyCallerDoesTheWorkWhenNoHelperCanRun(t *testing.T) {
	withProcs(t, 4)
	q := queue.NewConcurrent("stopped")
	q.Suspend() // helper blocks are queued but cannot start
	var onCaller atomic.Int32
	Apply(q, 1000, func(int) {
		if !q.IsCurrent() {
			onCaller.Add(1)
		}
	})
	require.EqualValues(t, 1000, onCaller.Load(), "every iteration ran on the caller")
	q.Resume() // the helpers now start, find nothing left, and end
	require.NoError(t, q.Close(context.Background()))

	limited := queue.NewConcurrent("limited", queue.WithLimit(1))
	limited.Suspend()
	limited.Async(func() {}) // full: TryAsync refuses the helpers
	var n atomic.Int32
	Apply(limited, 100, func(int) { n.Add(1) })
	require.EqualValues(t, 100, n.Load())
	limited.Resume()
	require.NoError(t, limited.Close(context.Background()))
}

func TestNestedApplyRunsInline(t *testing.T) {
	withProcs(t, 4)
	q := queue.NewConcurrent("nested", queue.WithWidth(2))
	var total atomic.Int32
	var elsewhere atomic.Int32
	Apply(q, 4, func(int) {
		outer := goid.G()
		Apply(q, 4, func(int) {
			total.Add(1)
			if goid.G() != outer {
				elsewhere.Add(1)
			}
		})
	})
	require.EqualValues(t, 16, total.Load())
	require.Zero(t, elsewhere.Load(), "a nested Apply on the same queue ran iterations on other goroutines")

	s := queue.NewSerial("s")
	s.Sync(func() { Apply(s, 3, func(int) { total.Add(1) }) })
	require.EqualValues(t, 19, total.Load())

	// A block of a queue that targets s is running on s too: a Sync onto s would deadlock.
	child := queue.NewSerial("child", queue.WithTarget(s))
	done := make(chan struct{})
	child.Async(func() {
		Apply(s, 3, func(int) { total.Add(1) })
		close(done)
	})
	testutil.Recv(t, done, "Apply onto the target of the caller's serial queue")
	require.EqualValues(t, 22, total.Load())

	// Apply from an Apply on the Global queue onto the Global queue.
	g := queue.Global(queue.Default)
	Apply(g, 10, func(int) { Apply(g, 10, func(int) { total.Add(1) }) })
	require.EqualValues(t, 122, total.Load())
}

// needEachOther returns the body of an Apply(q, 2) whose two iterations each wait for the
// other: it finishes only if they run at the same time.
func needEachOther() func(int) {
	a, b := make(chan struct{}), make(chan struct{})
	return func(i int) {
		if i == 0 {
			close(a)
			<-b
		} else {
			close(b)
			<-a
		}
	}
}

func TestApplyFromInsideAQueueIsStillParallel(t *testing.T) {
	withProcs(t, 4)
	// From a block of a serial queue, onto the Global queue it targets.
	s := queue.NewSerial("s")
	done := make(chan struct{})
	s.Async(func() {
		Apply(queue.Global(queue.Default), 2, needEachOther())
		close(done)
	})
	testutil.Recv(t, done, "two iterations at once on Global, called from a serial queue's block")

	// From a plain block of a concurrent queue of width 3, onto that queue: the caller uses
	// the slot it holds, and the helper takes another.
	c := queue.NewConcurrent("c", queue.WithWidth(3))
	done = make(chan struct{})
	c.Async(func() {
		Apply(c, 2, needEachOther())
		close(done)
	})
	testutil.Recv(t, done, "two iterations at once on c, called from c's block")
}

func TestApplyPanicReachesTheCallerAfterTheOthersStop(t *testing.T) {
	withProcs(t, 4)
	q := queue.NewConcurrent("p", queue.WithWidth(2))
	otherStarted, release := make(chan struct{}), make(chan struct{})
	var otherDone atomic.Bool
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		Apply(q, 2, func(i int) {
			if i == 0 {
				<-otherStarted
				panic("boom at 0")
			}
			close(otherStarted)
			<-release
			otherDone.Store(true)
		})
	}()
	notYet(t, panicked, "Apply returning while an iteration still runs")
	close(release)
	require.Equal(t, "boom at 0", testutil.Recv(t, panicked, "the panic"))
	require.True(t, otherDone.Load(), "Apply panicked before the other iteration ended")

	var ran atomic.Int32
	require.PanicsWithValue(t, "boom at 7", func() {
		Apply(q, 10_000, func(i int) {
			ran.Add(1)
			if i == 7 {
				panic("boom at 7")
			}
		})
	})
	require.Less(t, ran.Load(), int32(10_000), "the others stop taking indexes")
	require.PanicsWithValue(t, "serial", func() { Apply(queue.NewSerial("s"), 3, func(int) { panic("serial") }) })

	// The queue is fine afterwards.
	var n atomic.Int32
	Apply(q, 100, func(int) { n.Add(1) })
	require.EqualValues(t, 100, n.Load())
}

func TestApplyOnAClosedQueuePanics(t *testing.T) {
	withProcs(t, 4)
	c := queue.NewConcurrent("closed")
	require.NoError(t, c.Close(context.Background()))
	require.PanicsWithValue(t, `dispatch: Apply on closed queue "closed" (Apply before Close, or onto another queue)`,
		func() { Apply(c, 10, func(int) { t.Error("ran on a closed queue") }) })
	s := queue.NewSerial("closed")
	require.NoError(t, s.Close(context.Background()))
	require.Panics(t, func() { Apply(s, 10, func(int) { t.Error("ran on a closed queue") }) })
}
