package dispatch

import (
	"fmt"
	"sync"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
)

// NewTimer returns a timer source that runs fn on q every interval, the first time one
// interval after the first Resume (dispatch_source_create with DISPATCH_SOURCE_TYPE_TIMER).
// leeway is how late a tick may be: deadlines are rounded up to a multiple of it, so that
// timers with the same leeway fire together and the runtime can coalesce their wake-ups.
// Ticks that come while fn is pending or running, or while the timer is suspended, are
// coalesced into one call. Between ticks the timer holds a runtime timer, no goroutine.
func NewTimer(q *queue.Queue, interval, leeway time.Duration, fn func()) *Source {
	s, _ := newTimer(q, interval, leeway, fn)
	return s
}

func newTimer(q *queue.Queue, interval, leeway time.Duration, fn func()) (*Source, *timerState) {
	if interval <= 0 {
		panic(fmt.Sprintf("dispatch: NewTimer with interval %v: it must be positive", interval))
	}
	t := &timerState{interval: interval, leeway: min(max(leeway, 0), interval)}
	s := &Source{}
	s.init(q,
		func() bool { return t.takeable() },
		func() {
			if t.take() > 0 {
				fn()
			}
		},
		func() { t.arm(s) },
		func() { t.disarm() },
	)
	return s, t
}

type timerState struct {
	interval, leeway time.Duration

	mu    sync.Mutex
	ticks uint64
	next  time.Time
	timer *time.Timer
	off   bool
}

func (t *timerState) arm(s *Source) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.off {
		return
	}
	t.next = time.Now().Add(t.interval)
	t.timer = time.AfterFunc(t.delay(time.Now()), func() { t.tick(s) })
}

// delay is how long until the next deadline, rounded up to the leeway.
func (t *timerState) delay(now time.Time) time.Duration {
	d := t.next.Sub(now)
	if t.leeway > 0 {
		if r := d % t.leeway; r != 0 {
			d += t.leeway - r
		}
	}
	return max(d, 0)
}

func (t *timerState) tick(s *Source) {
	t.mu.Lock()
	if t.off {
		t.mu.Unlock()
		return
	}
	t.ticks++
	now := time.Now()
	for !t.next.After(now) {
		t.next = t.next.Add(t.interval) // skip deadlines already past: they are in this tick
	}
	t.timer.Reset(t.delay(now))
	t.mu.Unlock()
	s.fire()
}

func (t *timerState) disarm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.off = true
	if t.timer != nil {
		t.timer.Stop()
	}
}

func (t *timerState) takeable() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ticks > 0
}

func (t *timerState) take() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.ticks
	t.ticks = 0
	return n
}
