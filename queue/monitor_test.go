package queue

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// setSampler makes the stall monitors read f instead of the process.
func setSampler(t *testing.T, f func() procSample) {
	sampler.Store(&f)
	t.Cleanup(func() { sampler.Store(nil) })
}

// lendFreely undoes what earlier tests left: no lent workers, lending allowed.
func lendFreely(t *testing.T) {
	noLending.Store(false)
	exec.mu.Lock()
	exec.poolsLocked(func(p *pool) { p.extra.Store(0) })
	exec.mu.Unlock()
}

// A CPU-bound block that runs far longer than the stall threshold gets no extra worker: the
// monitor finds the process with no CPU to give (the block waits for the P the monitor took
// to look). Another queue's block waits for it instead of running beside it on a lent
// worker, at GOMAXPROCS=1 and with two such blocks at GOMAXPROCS=2.
func TestACPUBoundBlockGetsNoExtraWorker(t *testing.T) {
	for _, procs := range []int{1, 2} {
		withProcs(t, procs)
		lendFreely(t)
		lent := Executor().LentTotal
		busy := NewConcurrent("busy")
		started := make(chan struct{}, procs)
		until := time.Now().Add(10 * stallThreshold) // the blocks compute until then
		for range procs {
			busy.Async(func() {
				started <- struct{}{}
				for time.Now().Before(until) {
				}
			})
		}
		for range procs {
			testutil.Recv(t, started, "a CPU-bound block")
		}
		ranBeside := make(chan bool, 1)
		NewSerial("other").Async(func() { ranBeside <- time.Now().Before(until) })
		require.False(t, testutil.Recv(t, ranBeside, "the other queue's block"),
			"the other queue's block ran while the CPU-bound ones computed (GOMAXPROCS=%d)", procs)
		syncDone(t, busy)
		require.Equal(t, lent, Executor().LentTotal, "workers lent (GOMAXPROCS=%d)", procs)
	}
}

// The monitor's judgement, with the process's readings made up (fake time in a bubble): one
// worker is held by a block waiting on a channel, and another queue's block waits for a
// worker during a second of fake time, fifty ticks of the monitor.
func TestStallMonitorLendsOnlyToBlockedWorkersWithCPUToGive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		read  func(start time.Time) procSample
		lends bool
	}{
		{"the workers are blocked and the CPU idle", func(time.Time) procSample { return procSample{} }, true},
		{"the OS does not say the CPU time", func(time.Time) procSample { return procSample{cpu: -1} }, true},
		{"the process used a CPU all along: the block computes", func(start time.Time) procSample {
			return procSample{cpu: time.Since(start)} // one CPU per second of (fake) time
		}, false},
		{"goroutines wait for a P", func(time.Time) procSample { return procSample{runnable: 1} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withProcs(t, 1)
			lendFreely(t)
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				setSampler(t, func() procSample { return tc.read(start) })
				lent := Executor().LentTotal
				release := make(chan struct{})
				held := NewSerial("held")
				held.Async(func() { <-release })
				ran := make(chan struct{})
				NewSerial("other").Async(func() { close(ran) })
				time.Sleep(50 * stallThreshold)
				select {
				case <-ran:
					require.True(t, tc.lends, "the other block ran on a lent worker")
					require.Equal(t, lent+1, Executor().LentTotal)
				default:
					require.False(t, tc.lends, "no worker was lent")
					require.Equal(t, lent, Executor().LentTotal)
				}
				close(release)
				<-ran
			})
		})
	}
}

// However many workers are blocked, at most maxExtraWorkers are lent at once.
func TestStallMonitorLendsAtMostItsCap(t *testing.T) {
	withProcs(t, 1)
	lendFreely(t)
	synctest.Test(t, func(t *testing.T) {
		setSampler(t, func() procSample { return procSample{} })
		const blocks = maxExtraWorkers + 40
		release := make(chan struct{})
		var started atomic.Int32
		for range blocks {
			Global(Default).Async(func() {
				started.Add(1)
				<-release
			})
		}
		time.Sleep(2 * blocks * stallThreshold) // twice the ticks it takes to lend to all
		require.EqualValues(t, 1+maxExtraWorkers, started.Load(), "blocks running at GOMAXPROCS=1")
		require.Equal(t, maxExtraWorkers, Executor().Lent)
		close(release)
		synctest.Wait()
		require.EqualValues(t, blocks, started.Load())
	})
}
