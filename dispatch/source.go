package dispatch

import (
	"sync"

	"github.com/dispatchkit/dispatchkit/queue"
)

// source is the state machine every source shares (GCD's dispatch_source_t): it starts
// suspended; events are recorded by the kind of source and delivered by one handler block on
// the source's queue, so events that come while a handler is pending, running or the source
// is suspended are coalesced into the next delivery; Cancel stops deliveries and runs the
// cancel handler once, on the queue, after the last event handler.
type source struct {
	q *queue.Queue

	mu          sync.Mutex
	suspended   int  // starts at 1: created suspended
	resumedOnce bool // Resume has started the source at least once
	cancelled   bool
	scheduled   bool // a delivery block is queued or running
	cancelFn    func()
	cancelRan   bool

	pending func() bool // reports whether events wait to be delivered
	deliver func()      // runs on q: takes the events and calls the user's handler
	start   func()      // first Resume: arm the timer, subscribe to signals
	stop    func()      // Cancel: disarm, unsubscribe
}

func (s *source) init(q *queue.Queue, pending func() bool, deliver, start, stop func()) {
	s.q, s.suspended = q, 1
	s.pending, s.deliver, s.start, s.stop = pending, deliver, start, stop
}

// Resume undoes one Suspend (or the suspension a source is created with). It panics if the
// source is not suspended.
func (s *source) Resume() {
	s.mu.Lock()
	if s.suspended == 0 {
		s.mu.Unlock()
		panic("dispatch: Resume of a source that is not suspended (unbalanced Resume)")
	}
	s.suspended--
	first := s.suspended == 0 && !s.resumedOnce && !s.cancelled
	if first {
		s.resumedOnce = true
	}
	s.scheduleLocked()
	s.mu.Unlock()
	if first && s.start != nil {
		s.start()
	}
}

// Suspend stops deliveries until a matching Resume; events that happen meanwhile are kept
// and delivered, coalesced, on Resume.
func (s *source) Suspend() {
	s.mu.Lock()
	s.suspended++
	s.mu.Unlock()
}

// Cancel stops the source: no event handler starts after it (one already running finishes),
// and the cancel handler, if any, runs once on the source's queue after the last one.
func (s *source) Cancel() {
	s.mu.Lock()
	if s.cancelled {
		s.mu.Unlock()
		return
	}
	s.cancelled = true
	runNow := !s.scheduled
	if runNow {
		s.scheduled = true
	}
	s.mu.Unlock()
	if s.stop != nil {
		s.stop()
	}
	if runNow {
		s.q.Async(s.run)
	}
}

// SetCancelHandler sets the block that runs once, on the source's queue, after Cancel.
func (s *source) SetCancelHandler(fn func()) {
	s.mu.Lock()
	s.cancelFn = fn
	s.mu.Unlock()
}

// fire records that events are waiting and makes sure a delivery is on its way.
func (s *source) fire() {
	s.mu.Lock()
	s.scheduleLocked()
	s.mu.Unlock()
}

func (s *source) scheduleLocked() {
	if s.scheduled || s.cancelled || s.suspended > 0 || !s.pending() {
		return
	}
	s.scheduled = true
	s.q.Async(s.run)
}

// run is the delivery block, on the source's queue.
func (s *source) run() {
	s.mu.Lock()
	if s.cancelled {
		s.scheduled = true // stays set: nothing is delivered after the cancel handler
		fn := s.cancelFn
		ran := s.cancelRan
		s.cancelRan = true
		s.mu.Unlock()
		if !ran && fn != nil {
			fn()
		}
		return
	}
	if s.suspended > 0 {
		s.scheduled = false
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.deliver()
	s.mu.Lock()
	s.scheduled = false
	if s.cancelled {
		s.scheduled = true
		s.mu.Unlock()
		s.q.Async(s.run) // the cancel handler, after this last handler
		return
	}
	s.scheduleLocked() // events that came while the handler ran
	s.mu.Unlock()
}

// A Source delivers timer ticks or signals to a handler on a queue. It is created suspended:
// call Resume to start it.
type Source struct {
	source
}
