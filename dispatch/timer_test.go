package dispatch

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"
)

func TestTimerFirstTickIsOneIntervalAfterResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("timer")
		ticks := make(chan time.Time, 100)
		tm := NewTimer(q, time.Second, 0, func() { ticks <- time.Now() })

		time.Sleep(10 * time.Second)
		synctest.Wait()
		none(t, ticks, "a timer ticked before its first Resume")

		resumed := time.Now()
		tm.Resume()
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		none(t, ticks, "a tick before one interval had passed")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		require.Equal(t, resumed.Add(time.Second), <-ticks, "the first tick")
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, resumed.Add(2*time.Second), <-ticks, "the second tick")
		tm.Cancel()
		time.Sleep(time.Hour)
		synctest.Wait()
		none(t, ticks, "a tick after Cancel")
	})
}

func TestTimerTicksWhileSuspendedAreDeliveredOnceOnResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("timer")
		ticks := make(chan time.Time, 100)
		tm := NewTimer(q, time.Second, 0, func() { ticks <- time.Now() })
		start := time.Now()
		tm.Resume()
		time.Sleep(time.Second)
		synctest.Wait()
		require.Equal(t, start.Add(time.Second), <-ticks)

		tm.Suspend()
		time.Sleep(5500 * time.Millisecond) // five deadlines pass while suspended
		synctest.Wait()
		none(t, ticks, "a suspended timer delivered")
		require.Empty(t, dispatchGoroutines(""), "a suspended timer holds a goroutine")

		tm.Resume()
		synctest.Wait()
		require.Equal(t, start.Add(6500*time.Millisecond), <-ticks, "the missed ticks, as one, at Resume")
		none(t, ticks, "more than one call for the missed ticks")
		// The grid laid at the first Resume holds: the next tick is at 7s, not 7.5s.
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, start.Add(7*time.Second), <-ticks)

		// Suspended and resumed before a deadline passes: nothing owed.
		tm.Suspend()
		time.Sleep(500 * time.Millisecond)
		tm.Resume()
		synctest.Wait()
		none(t, ticks, "a tick for a suspension in which no deadline passed")
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, start.Add(8*time.Second), <-ticks)
		tm.Cancel()
	})
}

func TestTimerTicksWhileTheHandlerRunsAreCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("timer")
		calls := make(chan struct{}, 100)
		release := make(chan struct{})
		first := true
		tm := NewTimer(q, time.Second, 0, func() {
			calls <- struct{}{}
			if first {
				first = false
				<-release // a slow handler: three deadlines pass while it runs
			}
		})
		tm.Resume()
		time.Sleep(time.Second)
		synctest.Wait()
		<-calls
		time.Sleep(3 * time.Second)
		synctest.Wait()
		none(t, calls, "a second call while the first runs")
		close(release)
		synctest.Wait()
		<-calls
		none(t, calls, "the ticks during a slow handler make more than one call")
		tm.Cancel()
	})
}

func TestTimerHoldsNoGoroutineBetweenTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("timer")
		ticks := make(chan struct{}, 100)
		tm := NewTimer(q, time.Minute, 0, func() { ticks <- struct{}{} })
		tm.Resume()
		for range 3 {
			time.Sleep(30 * time.Second)
			synctest.Wait()
			require.Empty(t, dispatchGoroutines(""), "a goroutine between ticks")
			time.Sleep(30 * time.Second)
			synctest.Wait()
			<-ticks
		}
		tm.Cancel()
	})
}

func TestTimerLeewayAlignsDeadlinesAndNeverFiresEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The bubble's clock starts at midnight, so multiples of the leeway fall on whole
		// 100ms marks. Two timers started 30ms apart, their deadlines inside one 100ms
		// window, fire at the same instants: at its end.
		q := queue.NewSerial("timers")
		time.Sleep(10 * time.Millisecond)
		a, b := make(chan time.Time, 10), make(chan time.Time, 10)
		ta := NewTimer(q, time.Second, 100*time.Millisecond, func() { a <- time.Now() })
		startA := time.Now()
		ta.Resume()
		time.Sleep(30 * time.Millisecond)
		tb := NewTimer(q, time.Second, 100*time.Millisecond, func() { b <- time.Now() })
		startB := time.Now()
		tb.Resume()
		for i := 1; i <= 3; i++ {
			time.Sleep(time.Second)
			synctest.Wait()
			atA, atB := <-a, <-b
			require.Equal(t, atA, atB, "tick %d: timers with the same leeway fire together", i)
			require.False(t, atB.Before(startB.Add(time.Duration(i)*time.Second)), "tick %d before its deadline", i)
			require.Less(t, atA.Sub(startA.Add(time.Duration(i)*time.Second)), 100*time.Millisecond, "tick %d later than the leeway", i)
			require.Zero(t, atA.UnixNano()%int64(100*time.Millisecond), "tick %d off the leeway's grid", i)
		}
		ta.Cancel()
		tb.Cancel()
	})
}

func TestTimerCancelHandlerRunsOnceAfterTheLastTick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := queue.NewSerial("timer")
		var events []string // touched only on q
		var tm *Source
		n := 0
		tm = NewTimer(q, time.Second, 0, func() {
			n++
			events = append(events, "tick")
			if n == 2 {
				tm.Cancel() // from the handler itself
			}
		})
		tm.SetCancelHandler(func() { events = append(events, "cancelled") })
		tm.Resume()
		time.Sleep(time.Hour)
		synctest.Wait()
		tm.Cancel()
		synctest.Wait()
		q.Sync(func() { require.Equal(t, []string{"tick", "tick", "cancelled"}, events) })
		require.PanicsWithValue(t,
			"dispatch: Resume of a source that is not suspended (unbalanced Resume: a source starts suspended and takes one Resume per Suspend)",
			tm.Resume)
	})
}

func TestNewTimerRejectsANonPositiveInterval(t *testing.T) {
	q := queue.NewSerial("timer")
	require.PanicsWithValue(t, "dispatch: NewTimer with interval 0s: it must be positive", func() { NewTimer(q, 0, 0, func() {}) })
	require.Panics(t, func() { NewTimer(q, time.Second, 0, nil) })
	require.Panics(t, func() { NewTimer(nil, time.Second, 0, func() {}) })
}
