package dispatch

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/queue"
)

// events is what a kind of source (timer, signal, data) adds to the shared state machine.
type events interface {
	// pending reports whether events wait to be delivered. Called with the source's lock held.
	pending() bool
	// deliver runs on the source's queue: it takes the waiting events and calls the handler.
	deliver()
	// running is told, with the source's lock held, when the source starts (true) or stops
	// (false) wanting events: the first Resume, each Suspend and each Resume after it.
	running(on bool)
	// cancel stops producing events for good. Called once, without the source's lock.
	cancel()
}

// source is the state machine every source shares (GCD's dispatch_source_t). It starts
// suspended. Events are recorded by the kind of source and delivered by one block on the
// source's queue at a time, so events that come while that block is pending or running, or
// while the source is suspended, are coalesced into the next delivery. Cancel stops
// deliveries and runs the cancel handler once, on the queue, after the last event handler.
type source struct {
	q  *queue.Queue
	ev events

	mu        sync.Mutex
	suspended int // starts at 1: created suspended
	cancelled bool
	scheduled atomic.Bool // a run block is queued or running; written with mu held
	cancelFn  func()
}

func (s *source) init(q *queue.Queue, ev events) {
	if q == nil {
		panic("dispatch: a source needs a queue to run its handler on (nil *queue.Queue)")
	}
	s.q, s.ev, s.suspended = q, ev, 1
}

// Resume undoes one Suspend, or the suspension a source is created with; events kept while
// it was suspended are then delivered, coalesced. It panics if the source is not suspended:
// each Resume must balance a Suspend (or the creation).
func (s *source) Resume() {
	s.mu.Lock()
	if s.suspended == 0 {
		s.mu.Unlock()
		panic("dispatch: Resume of a source that is not suspended (unbalanced Resume: a source starts suspended and takes one Resume per Suspend)")
	}
	s.suspended--
	if s.suspended == 0 && !s.cancelled {
		s.ev.running(true)
	}
	submit := s.wantRunLocked()
	s.mu.Unlock()
	if submit {
		s.submit()
	}
}

// Suspend stops deliveries until a matching Resume (a handler already running finishes).
// Events that happen meanwhile are kept and delivered, coalesced, on Resume.
func (s *source) Suspend() {
	s.mu.Lock()
	s.suspended++
	if s.suspended == 1 && !s.cancelled {
		s.ev.running(false)
	}
	s.mu.Unlock()
}

// Cancel stops the source for good: no event handler starts after it (one already running
// finishes), events not yet delivered are dropped, and the cancel handler, if any, runs once
// on the source's queue after the last event handler. Unlike GCD, a suspended source need not
// be resumed for its cancel handler to run. A second Cancel does nothing.
func (s *source) Cancel() {
	s.mu.Lock()
	if s.cancelled {
		s.mu.Unlock()
		return
	}
	s.cancelled = true
	submit := !s.scheduled.Load() // else the queued or running block runs the cancel handler
	s.scheduled.Store(true)
	s.mu.Unlock()
	s.ev.cancel()
	if submit {
		s.submit()
	}
}

// SetCancelHandler sets the block that runs once, on the source's queue, after Cancel and
// after the last event handler. Set it before calling Cancel.
func (s *source) SetCancelHandler(fn func()) {
	s.mu.Lock()
	s.cancelFn = fn
	s.mu.Unlock()
}

// fire makes sure a delivery is on its way for the events just recorded.
func (s *source) fire() {
	if s.scheduled.Load() {
		// The block on its way checks for events after its delivery, and the events were
		// recorded before this look: they will not be missed.
		return
	}
	s.mu.Lock()
	submit := s.wantRunLocked()
	s.mu.Unlock()
	if submit {
		s.submit()
	}
}

// wantRunLocked reports whether a run block must be submitted, and if so marks it scheduled.
func (s *source) wantRunLocked() bool {
	if s.scheduled.Load() || s.cancelled || s.suspended > 0 || !s.ev.pending() {
		return false
	}
	s.scheduled.Store(true)
	return true
}

// submit queues the run block, outside the source's lock: on a queue made WithLimit it may
// wait for room. If the queue is closed, nothing can run on it again: the source cancels
// itself, without a cancel handler.
func (s *source) submit() {
	if submitTo(s.q, s.run) {
		return
	}
	s.mu.Lock()
	first := !s.cancelled
	s.cancelled = true
	s.cancelFn = nil
	s.mu.Unlock()
	if first {
		s.ev.cancel()
	}
}

// run is the delivery block, on the source's queue.
func (s *source) run() {
	s.mu.Lock()
	if !s.cancelled && s.suspended == 0 {
		s.mu.Unlock()
		s.ev.deliver()
		s.mu.Lock()
	}
	if s.cancelled {
		// scheduled stays set: nothing is delivered after the cancel handler.
		fn := s.cancelFn
		s.cancelFn = nil
		s.mu.Unlock()
		if fn != nil {
			fn()
		}
		return
	}
	s.scheduled.Store(false)
	submit := s.wantRunLocked() // events that came while the handler ran
	s.mu.Unlock()
	if submit {
		s.submit()
	}
}

// submitTo submits fn to q for an event that came from a timer, a signal or a Merge. On a
// full queue (WithLimit) it waits for room, as Async does; it reports false if q is closed.
func submitTo(q *queue.Queue, fn func()) bool {
	err := q.TryAsync(fn)
	if errors.Is(err, queue.ErrFull) {
		q.Async(fn)
		return true
	}
	return err == nil
}

// A Source delivers timer ticks or signals to a handler on a queue. It is created suspended:
// set it up (SetCancelHandler), then call Resume.
type Source struct {
	source
}
