package dispatch

import (
	"context"
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
	// cancel stops producing events for good, without waiting for anything. Called once,
	// without the source's lock.
	cancel()
	// join waits until whatever produced events (a signal source's goroutine) has stopped,
	// once cancel was called. Cancel calls it, never from that producer itself.
	join()
}

// source is the state machine every source shares (GCD's dispatch_source_t). It starts
// suspended. Events are recorded by the kind of source and delivered by one block on the
// source's queue at a time, so events that come while that block is pending or running, or
// while the source is suspended, are coalesced into the next delivery. Cancel stops
// deliveries and runs the cancel handler once, on the queue, after the last event handler.
//
// The run block is submitted with Submit, by whoever finds it needed (a Merge, a tick, the
// signal relay, Resume, the previous run block): on a full queue (WithLimit) that waits for
// room, and Cancel ends the wait through stop. A closed queue makes the source go quiet.
type source struct {
	q  *queue.Queue
	ev events

	mu         sync.Mutex
	suspended  int // starts at 1: created suspended
	cancelled  bool
	scheduled  atomic.Bool   // a run block is queued, running or being submitted; written with mu held
	submitting bool          // the run block is being submitted (scheduled is set too)
	resolved   chan struct{} // made by a Cancel waiting for that submission, closed when it ends
	abandoned  bool          // that submission gave up at Cancel: Cancel submits in its place
	cancelFn   func()

	stop     context.Context // ends at Cancel or when the queue is found closed
	stopWait context.CancelFunc
}

func (s *source) init(q *queue.Queue, ev events) {
	if q == nil {
		panic("dispatch: a source needs a queue to run its handler on (nil *queue.Queue)")
	}
	s.q, s.ev, s.suspended = q, ev, 1
	s.stop, s.stopWait = context.WithCancel(context.Background())
}

// Resume undoes one Suspend, or the suspension a source is created with; events kept while
// it was suspended are then delivered, coalesced. It panics if the source is not suspended:
// each Resume must balance a Suspend (or the creation). If it has events to deliver and the
// queue is full (WithLimit), it waits for room, as Merge does.
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
// be resumed for its cancel handler to run. When Cancel returns, the source holds no
// goroutine (a signal source's relay has ended) and none waits on its behalf for room on a
// full queue; Cancel itself may wait for room there, as Async does, to queue the cancel
// handler. A second Cancel does nothing more.
func (s *source) Cancel() {
	s.mu.Lock()
	if s.cancelled {
		s.mu.Unlock()
		s.ev.join()
		return
	}
	s.cancelled = true
	submit := !s.scheduled.Load() // else the queued or running block runs the cancel handler
	s.scheduled.Store(true)
	var resolved chan struct{}
	if s.submitting {
		resolved = make(chan struct{})
		s.resolved = resolved
	}
	s.mu.Unlock()
	s.stopWait()
	if resolved != nil {
		if testHookCancelWaits != nil {
			testHookCancelWaits()
		}
		<-resolved // soon: its wait for room, if any, ended with stop
		s.mu.Lock()
		// The submission Cancel waited for may have run already, before Cancel looked
		// (scheduled was clear: submit is set), or have given up (abandoned): either way
		// nothing queued will run the cancel handler, so Cancel queues it.
		submit = submit || s.abandoned
		s.mu.Unlock()
	}
	s.ev.cancel()
	s.ev.join()
	if submit {
		s.submitCancel()
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

// wantRunLocked reports whether a run block must be submitted, and if so marks it scheduled
// and being submitted: the caller must then call submit.
func (s *source) wantRunLocked() bool {
	if s.scheduled.Load() || s.cancelled || s.suspended > 0 || !s.ev.pending() {
		return false
	}
	s.scheduled.Store(true)
	s.submitting = true
	return true
}

// submit queues the run block, outside the source's lock: on a queue made WithLimit it may
// wait for room, until Cancel. If the queue is closed, nothing can run on it again: the
// source goes quiet, cancelled without its cancel handler (the queue counts the refused block
// in Stats.Rejected).
func (s *source) submit() {
	err := s.q.Submit(s.stop, s.run)
	if testHookSubmitted != nil {
		testHookSubmitted()
	}
	s.mu.Lock()
	s.submitting = false
	if s.resolved != nil {
		close(s.resolved)
		s.resolved = nil
	}
	switch {
	case err == nil:
		s.mu.Unlock()
	case errors.Is(err, queue.ErrClosed):
		first := !s.cancelled
		s.cancelled = true
		s.cancelFn = nil
		s.mu.Unlock()
		s.stopWait()
		if first {
			s.ev.cancel()
		}
	default: // Cancel ended the wait for room, and will queue the cancel handler itself
		s.abandoned = true
		s.mu.Unlock()
	}
}

// submitCancel queues the run block that runs the cancel handler (the source is cancelled,
// and scheduled stays set: nothing else is submitted for it). It waits for room on a full
// queue, as Async does; on a closed one the cancel handler is dropped.
func (s *source) submitCancel() {
	_ = s.q.Submit(context.Background(), s.run)
}

// Test hooks, nil outside tests: testHookSubmitted runs in submit once the queue took (or
// refused) the run block, testHookCancelWaits as Cancel starts waiting for that submission.
var testHookSubmitted, testHookCancelWaits func()

// run is the delivery block, on the source's queue.
func (s *source) run() {
	s.mu.Lock()
	if !s.cancelled && s.suspended == 0 {
		s.mu.Unlock()
		s.deliver()
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

// deliver calls the handler. If it panics, the source is made ready to go on before the
// panic goes on to the queue's panic handler: a later event is delivered, and Cancel (or a
// Cancel made by the handler itself) runs the cancel handler.
func (s *source) deliver() {
	returned := false
	defer func() {
		if !returned {
			s.afterPanic()
		}
	}()
	s.ev.deliver()
	returned = true
}

func (s *source) afterPanic() {
	s.mu.Lock()
	if s.cancelled {
		// Cancelled while the handler ran, which Cancel left to this block: a new one
		// runs the cancel handler (none if the queue was found closed meanwhile).
		submit := s.cancelFn != nil
		s.mu.Unlock()
		if submit {
			s.submitCancel()
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

// A Source delivers timer ticks or signals to a handler on a queue. It is created suspended:
// set it up (SetCancelHandler), then call Resume.
type Source struct {
	source
}
