package dispatch

import (
	"fmt"
	"sync"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
)

// NewTimer returns a timer source that runs fn on q every interval, the first time one
// interval after the first Resume (dispatch_source_create with DISPATCH_SOURCE_TYPE_TIMER).
//
// leeway is how late a tick may be (at most interval). Each deadline is put off to the next
// multiple of leeway on the clock, so timers with the same leeway fall due at the same
// instants and the runtime serves them in one wake-up; a leeway of 0 keeps exact deadlines.
// Ticks that come while fn is pending or running, or while the timer is suspended, are
// coalesced into one call. Deadlines stay on the grid laid at the first Resume: a late or
// coalesced tick does not shift the ones after it.
//
// The timer holds no goroutine: between ticks it is one runtime timer (time.AfterFunc), and
// while it is suspended not even that runs; Resume finds out whether a deadline passed
// meanwhile and, if so, delivers one tick at once. NewTimer panics if interval is not
// positive.
func NewTimer(q *queue.Queue, interval, leeway time.Duration, fn func()) *Source {
	if interval <= 0 {
		panic(fmt.Sprintf("dispatch: NewTimer with interval %v: it must be positive", interval))
	}
	if fn == nil {
		panic("dispatch: NewTimer with a nil handler")
	}
	s := &Source{}
	t := &timerEvents{s: &s.source, fn: fn, interval: interval, leeway: min(max(leeway, 0), interval)}
	s.init(q, t)
	return s
}

// timerEvents counts deadlines that passed and keeps one runtime timer armed for the next
// one while the source runs. Lock order: the source's lock, then mu; tick takes mu alone.
type timerEvents struct {
	s                *source
	fn               func()
	interval, leeway time.Duration

	mu    sync.Mutex
	due   uint64    // deadlines passed and not yet delivered
	next  time.Time // the next deadline; zero until the first Resume
	timer *time.Timer
	armed bool // the source runs: tick counts; false while suspended and after Cancel
	dead  bool
}

func (t *timerEvents) pending() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.due > 0
}

func (t *timerEvents) deliver() {
	t.mu.Lock()
	n := t.due
	t.due = 0
	t.mu.Unlock()
	if n > 0 {
		t.fn()
	}
}

func (t *timerEvents) running(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dead {
		return
	}
	if !on {
		t.armed = false
		if t.timer != nil {
			t.timer.Stop()
		}
		return
	}
	now := time.Now()
	if t.next.IsZero() {
		t.next = now.Add(t.interval) // the first tick: one interval after the first Resume
	} else {
		t.catchUpLocked(now) // deadlines missed while suspended make one tick
	}
	t.armed = true
	if t.timer == nil {
		t.timer = time.AfterFunc(t.delayLocked(now), t.tick)
	} else {
		t.timer.Reset(t.delayLocked(now))
	}
}

func (t *timerEvents) cancel() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dead, t.armed = true, false
	if t.timer != nil {
		t.timer.Stop()
	}
}

func (t *timerEvents) join() {}

// tick runs on the runtime timer's goroutine. Its fire may wait there for room on a full
// queue (until Cancel), and on a closed queue it makes the source go quiet: it never panics.
func (t *timerEvents) tick() {
	t.mu.Lock()
	now := time.Now()
	// Not armed: suspended or cancelled after the timer fired. Before next: a late call
	// from before a Suspend and Resume, which already re-armed the timer.
	if !t.armed || now.Before(t.next) {
		t.mu.Unlock()
		return
	}
	t.catchUpLocked(now)
	t.timer.Reset(t.delayLocked(now))
	t.mu.Unlock()
	t.s.fire()
}

// catchUpLocked counts the deadlines that passed by now and moves next past now.
func (t *timerEvents) catchUpLocked(now time.Time) {
	if now.Before(t.next) {
		return
	}
	k := now.Sub(t.next)/t.interval + 1
	t.due += uint64(k)
	t.next = t.next.Add(k * t.interval)
}

// delayLocked is how long from now until the timer should fire for next: next put off to the
// following multiple of leeway on the clock, so that timers sharing a leeway fire together.
func (t *timerEvents) delayLocked(now time.Time) time.Duration {
	at := t.next
	if t.leeway > 0 {
		r := time.Duration(at.UnixNano() % int64(t.leeway))
		if r < 0 {
			r += t.leeway // before 1970
		}
		if r != 0 {
			at = at.Add(t.leeway - r)
		}
	}
	return max(at.Sub(now), 0)
}
