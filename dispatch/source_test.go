package dispatch

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"
)

func TestTimerTicksAfterResumeAndNotBefore(t *testing.T) {
	q := queue.NewSerial("timer")
	ticks := make(chan time.Time, 100)
	const interval = 10 * time.Millisecond
	tm := NewTimer(q, interval, time.Millisecond, func() { ticks <- time.Now() })
	notYet(t, ticks, "a tick before Resume")
	start := time.Now()
	tm.Resume()
	first := recv(t, ticks, "the first tick")
	require.GreaterOrEqual(t, first.Sub(start), interval)
	recv(t, ticks, "a second tick")
	cancelled := make(chan struct{})
	tm.SetCancelHandler(func() { close(cancelled) })
	tm.Cancel()
	recv(t, cancelled, "the cancel handler")
	require.PanicsWithValue(t, "dispatch: Resume of a source that is not suspended (unbalanced Resume)", tm.Resume)
}

func TestTimerTicksWhileSuspendedAreCoalesced(t *testing.T) {
	q := queue.NewSerial("timer")
	var mu sync.Mutex
	calls := 0
	got := make(chan struct{}, 100)
	tm, state := newTimer(q, time.Millisecond, 0, func() {
		mu.Lock()
		calls++
		mu.Unlock()
		got <- struct{}{}
	})
	tm.Resume()
	recv(t, got, "a tick")
	tm.Suspend()
	q.Sync(func() {}) // a delivery already queued has run
	for len(got) > 0 {
		<-got
	}
	mu.Lock()
	before := calls
	mu.Unlock()
	require.Eventually(t, func() bool { // several ticks come while suspended
		state.mu.Lock()
		defer state.mu.Unlock()
		return state.ticks >= 3
	}, waitTimeout, time.Millisecond)
	mu.Lock()
	require.Equal(t, before, calls, "a suspended timer delivered")
	mu.Unlock()
	tm.Resume()
	recv(t, got, "the coalesced tick")
	tm.Cancel()
	q.Sync(func() {})
}

func TestSignalSourceDeliversAndStopsOnCancel(t *testing.T) {
	// A second subscriber keeps SIGUSR1 from killing the test process after Cancel.
	guard := make(chan os.Signal, 4)
	signal.Notify(guard, syscall.SIGUSR1)
	defer signal.Stop(guard)

	q := queue.NewSerial("signals")
	got := make(chan os.Signal, 4)
	src := NewSignal(q, func(s os.Signal) { got <- s }, syscall.SIGUSR1)
	src.Resume()
	// Notify is in place once Resume returns.
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	require.Equal(t, syscall.SIGUSR1, recv(t, got, "the signal"))
	cancelled := make(chan struct{})
	src.SetCancelHandler(func() { close(cancelled) })
	src.Cancel()
	recv(t, cancelled, "the cancel handler")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR1))
	recv(t, guard, "the signal at the guard")
	recv(t, guard, "the second signal at the guard")
	q.Sync(func() {})
	require.Empty(t, got, "a cancelled signal source delivered")
}

func TestDataAddCoalescesAndLosesNothing(t *testing.T) {
	q := queue.NewSerial("data")
	var total uint64
	calls := 0
	d := NewDataAdd(q, func(n uint64) { total += n; calls++ })
	for range 1000 {
		d.Merge(1) // suspended: kept
	}
	d.Merge(0) // a no-op
	q.Sync(func() { require.Zero(t, calls) })
	d.Resume()
	q.Sync(func() {})
	q.Sync(func() {
		require.EqualValues(t, 1000, total)
		require.Equal(t, 1, calls, "merges made while suspended arrive as one call")
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				d.Merge(2)
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		var v uint64
		q.Sync(func() { v = total })
		return v == 17000
	}, waitTimeout, time.Millisecond)
	q.Sync(func() { require.Less(t, calls, 8001, "merges were coalesced") })
	d.Cancel()
	d.Merge(5)
	q.Sync(func() {})
	q.Sync(func() { require.EqualValues(t, 17000, total, "a merge after Cancel was delivered") })
}

func TestDataOrAndReplace(t *testing.T) {
	q := queue.NewSerial("data")
	got := make(chan uint64, 4)
	or := NewDataOr(q, func(v uint64) { got <- v })
	or.Merge(1)
	or.Merge(4)
	or.Resume()
	require.EqualValues(t, 5, recv(t, got, "the OR of the merges"))
	rep := NewDataReplace(q, func(v uint64) { got <- v })
	rep.Merge(7)
	rep.Merge(9)
	rep.Resume()
	require.EqualValues(t, 9, recv(t, got, "the last value"))
	cancelled := make(chan struct{})
	rep.SetCancelHandler(func() { close(cancelled) })
	rep.Cancel()
	rep.Cancel()
	recv(t, cancelled, "the cancel handler")
	or.Cancel()
	q.Sync(func() {})
}
