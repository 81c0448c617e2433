package dispatch

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestSemaphoreKeepsSignalsAndWakesWaitersInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSemaphore(0)
		require.False(t, s.Signal(), "no waiter: the signal is kept")
		require.False(t, s.Signal(), "a second kept signal")
		require.NoError(t, s.Wait(context.Background()), "takes a kept signal")
		require.NoError(t, s.Wait(context.Background()), "takes the other kept signal")

		order := make(chan int, 5)
		for i := range 5 {
			go func() {
				if s.Wait(context.Background()) == nil {
					order <- i
				}
			}()
			synctest.Wait() // waiter i is in line before waiter i+1 comes
		}
		for want := range 5 {
			require.True(t, s.Signal(), "a Signal with waiters wakes one")
			synctest.Wait()
			require.Equal(t, want, <-order, "waiters wake in the order they came")
			none(t, order, "one Signal woke two waiters")
		}
	})
}

func TestSemaphoreWaitGivesUpWithItsContext(t *testing.T) {
	s := NewSemaphore(1)
	require.NoError(t, s.Wait(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- s.Wait(ctx) }()
	notYet(t, errs, "Wait on an empty semaphore")
	cancel()
	require.ErrorIs(t, testutil.Recv(t, errs, "Wait after cancel"), context.Canceled)
	require.False(t, s.Signal(), "the cancelled waiter left the line")
	require.NoError(t, s.Wait(context.Background()))
	require.Panics(t, func() { NewSemaphore(-1) })
}

func TestSemaphoreBoundsHolders(t *testing.T) {
	s := NewSemaphore(2)
	var holders, most atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 100 {
				if err := s.Wait(context.Background()); err != nil {
					t.Error(err)
					return
				}
				v := holders.Add(1)
				for m := most.Load(); v > m && !most.CompareAndSwap(m, v); m = most.Load() {
				}
				runtime.Gosched()
				holders.Add(-1)
				s.Signal()
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, most.Load(), int32(2))
}

// A Signal racing with a waiter's context ending must not lose its unit: either the waiter
// gets it (Wait returns nil) or it stays in the semaphore.
func TestSemaphoreLosesNoUnitWhenWaitersGiveUp(t *testing.T) {
	s := NewSemaphore(0)
	const n = 200
	var got atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		wg.Go(func() {
			if s.Wait(ctx) == nil {
				got.Add(1)
			}
		})
		wg.Go(func() {
			if i%2 == 0 {
				cancel()
			}
			s.Signal()
			cancel()
		})
	}
	wg.Wait()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	kept := 0
	for s.Wait(done) == nil { // takes kept units without waiting
		kept++
	}
	require.Equal(t, n, int(got.Load())+kept, "units taken plus units kept must equal the signals")
}
