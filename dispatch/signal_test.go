//go:build unix

package dispatch

import (
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// guardSignal subscribes the test itself to sig, so that a signal sent while no source
// relays it does not kill the test process, and returns where it arrives.
func guardSignal(t *testing.T, sig os.Signal) <-chan os.Signal {
	guard := make(chan os.Signal, 8)
	signal.Notify(guard, sig)
	t.Cleanup(func() { signal.Stop(guard) })
	return guard
}

// relayEnded reports whether src's relay goroutine had run to its end (its last act closes
// exited), as Cancel promises when it returns.
func relayEnded(src *Source) bool {
	select {
	case <-src.ev.(*signalEvents).exited:
		return true
	default:
		return false
	}
}

// requireRelayEnded checks what relayEnded saw as Cancel returned, then that the relay's
// goroutine is gone: having closed exited, it may still be on its way out for a moment
// (a stack dump taken at once showed it runnable after its last line, 1 run in ~200).
func requireRelayEnded(t *testing.T, ended bool) {
	t.Helper()
	require.True(t, ended, "Cancel returned before the relay goroutine ended")
	require.Eventually(t, func() bool { return len(dispatchGoroutines("signalEvents)")) == 0 },
		waitTimeout, time.Millisecond, "the relay goroutine outlived Cancel")
}

func kill(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, syscall.Kill(os.Getpid(), sig))
}

func TestSignalSourceDeliversAndStopsOnCancel(t *testing.T) {
	guard := guardSignal(t, syscall.SIGUSR1)
	q := queue.NewSerial("signals")
	got := make(chan os.Signal, 4)
	src := NewSignal(q, func(s os.Signal) { got <- s }, syscall.SIGUSR1)
	t.Cleanup(src.Cancel) // also when a check fails, so that the relay does not outlive the test
	require.Empty(t, dispatchGoroutines("signalEvents)"), "a signal source holds a goroutine before Resume")

	src.Resume() // signal.Notify is in place once Resume returns
	require.NotEmpty(t, dispatchGoroutines("signalEvents)"), "the relay goroutine of a running signal source")
	kill(t, syscall.SIGUSR1)
	require.Equal(t, syscall.SIGUSR1, testutil.Recv(t, got, "the signal"))
	testutil.Recv(t, guard, "the signal at the guard")

	cancelled := make(chan struct{})
	src.SetCancelHandler(func() { close(cancelled) })
	src.Cancel()
	requireRelayEnded(t, relayEnded(src))
	testutil.Recv(t, cancelled, "the cancel handler")
	kill(t, syscall.SIGUSR1)
	testutil.Recv(t, guard, "the signal sent after Cancel, at the guard")
	require.NoError(t, q.Close(t.Context()))
	require.Empty(t, got, "a cancelled signal source delivered")
}

func TestSignalsWhileSuspendedAreDeliveredOnResume(t *testing.T) {
	guard1 := guardSignal(t, syscall.SIGUSR1)
	guard2 := guardSignal(t, syscall.SIGUSR2)
	q := queue.NewSerial("signals")
	got := make(chan os.Signal, 8)
	src := NewSignal(q, func(s os.Signal) { got <- s }, syscall.SIGUSR1, syscall.SIGUSR2)
	t.Cleanup(src.Cancel)
	ev := src.ev.(*signalEvents)
	recorded := func() int {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		return len(ev.got)
	}
	src.Resume()
	src.Suspend()
	kill(t, syscall.SIGUSR2)
	testutil.Recv(t, guard2, "SIGUSR2 at the guard")
	kill(t, syscall.SIGUSR1)
	testutil.Recv(t, guard1, "SIGUSR1 at the guard")
	// The guard has them, but a signal reaches each subscriber in no set order: wait for the
	// source's relay to have recorded both.
	require.Eventually(t, func() bool { return recorded() == 2 }, waitTimeout, 100_000)
	// The same signal again before the handler ran for it: recorded once. (Sent through the
	// relay's own path, as a second kill could reach the relay after the Resume below.)
	ev.add(syscall.SIGUSR1)
	src.fire()
	require.Equal(t, 2, recorded())
	q.Sync(func() {})
	require.Empty(t, got, "a suspended signal source delivered")

	src.Resume()
	require.Equal(t, syscall.SIGUSR2, testutil.Recv(t, got, "the first signal"))
	require.Equal(t, syscall.SIGUSR1, testutil.Recv(t, got, "the second signal, delivered once"))
	src.Cancel()
	require.NoError(t, q.Close(t.Context()))
	require.Empty(t, got, "a signal delivered twice")
}

func TestSignalSourceCancelWaitsForItsRelayEvenWhenItWaitsForRoom(t *testing.T) {
	guard := guardSignal(t, syscall.SIGUSR1)
	q := queue.NewSerial("full", queue.WithLimit(1))
	var src *Source
	ready, cancelNow := make(chan struct{}), make(chan struct{})
	left := make(chan bool, 1)
	// Cancel from a block of the full queue that the relay waits on: it must neither hang nor
	// return before the relay has ended.
	q.Async(func() {
		close(ready)
		<-cancelNow
		src.Cancel()
		left <- relayEnded(src)
	})
	testutil.Recv(t, ready, "the block that keeps the queue busy")
	q.Async(func() {}) // full
	src = NewSignal(q, func(os.Signal) { t.Error("delivered after Cancel") }, syscall.SIGUSR1)
	cancelled := make(chan struct{})
	src.SetCancelHandler(func() { close(cancelled) })
	src.Resume()
	kill(t, syscall.SIGUSR1)
	testutil.Recv(t, guard, "the signal at the guard")
	require.Eventually(t, func() bool {
		g := dispatchGoroutines("signalEvents)")
		return len(g) == 1 && strings.Contains(g[0], "waitRoomLocked")
	}, waitTimeout, time.Millisecond, "the relay waiting for room on the full queue")
	close(cancelNow)
	requireRelayEnded(t, testutil.Recv(t, left, "Cancel's return"))
	testutil.Recv(t, cancelled, "the cancel handler")
	require.NoError(t, q.Close(t.Context()))
}

func TestNewSignalNeedsSignals(t *testing.T) {
	require.Panics(t, func() { NewSignal(queue.NewSerial("q"), func(os.Signal) {}) })
	require.Panics(t, func() { NewSignal(queue.NewSerial("q"), nil, syscall.SIGUSR1) })
}
