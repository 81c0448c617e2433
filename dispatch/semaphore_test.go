package dispatch

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSemaphoreKeepsSignalsAndWakesWaitersInOrder(t *testing.T) {
	s := NewSemaphore(0)
	require.False(t, s.Signal(), "no waiter: the signal is kept")
	require.NoError(t, s.Wait(context.Background()), "takes the kept signal")

	order := make(chan int, 3)
	queued := make(chan struct{})
	for i := range 3 {
		go func() {
			queued <- struct{}{}
			if s.Wait(context.Background()) == nil {
				order <- i
			}
		}()
		<-queued
		// wait until this waiter is in line before starting the next
		require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiters) == i+1 }, waitTimeout, 100_000)
	}
	for want := range 3 {
		require.True(t, s.Signal())
		require.Equal(t, want, recv(t, order, "a woken waiter"))
	}
}

func TestSemaphoreWaitGivesUpWithItsContext(t *testing.T) {
	s := NewSemaphore(1)
	require.NoError(t, s.Wait(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- s.Wait(ctx) }()
	notYet(t, errs, "Wait on an empty semaphore")
	cancel()
	require.ErrorIs(t, recv(t, errs, "Wait after cancel"), context.Canceled)
	require.False(t, s.Signal(), "the cancelled waiter left the line")
	require.NoError(t, s.Wait(context.Background()))
	require.Panics(t, func() { NewSemaphore(-1) })
}
