package dispatch

import (
	"os"
	"os/signal"
	"sync"

	"github.com/dispatchkit/dispatchkit/queue"
)

// NewSignal returns a source that runs fn on q for each signal in sigs the process gets
// (DISPATCH_SOURCE_TYPE_SIGNAL), through os/signal: from the first Resume the signals are
// relayed to it (signal.Notify), which also turns off their default action, as a signal
// handler does; Cancel stops relaying them (signal.Stop), which restores the default if
// nothing else asked for them. A signal that comes again before fn has run for it is
// delivered once; signals that come while the source is suspended are delivered on Resume.
//
// os/signal delivers on a channel, so from the first Resume until Cancel the source holds
// one goroutine, blocked on that channel (suspended too, so that no signal is missed);
// Cancel returns once it has ended. It panics if sigs is empty: signal.Notify would then
// relay every signal.
func NewSignal(q *queue.Queue, fn func(os.Signal), sigs ...os.Signal) *Source {
	if len(sigs) == 0 {
		panic("dispatch: NewSignal with no signals: name the ones to handle (signal.Notify with none would relay all)")
	}
	if fn == nil {
		panic("dispatch: NewSignal with a nil handler")
	}
	s := &Source{}
	s.init(q, &signalEvents{s: &s.source, fn: fn, sigs: sigs})
	return s
}

// signalEvents keeps the distinct signals received and not yet delivered, in arrival order.
type signalEvents struct {
	s    *source
	fn   func(os.Signal)
	sigs []os.Signal

	mu      sync.Mutex
	got     []os.Signal
	ch      chan os.Signal
	quit    chan struct{}
	exited  chan struct{} // closed when the relay goroutine returns
	started bool
	dead    bool
}

func (e *signalEvents) pending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.got) > 0
}

// deliver calls fn for the signals received so far, one at a time: a signal is taken off the
// list only as its call starts, so that a panicking call loses none of the others (and a
// Cancel meanwhile stops the rest).
func (e *signalEvents) deliver() {
	e.mu.Lock()
	n := len(e.got)
	e.mu.Unlock()
	for range n {
		e.mu.Lock()
		if len(e.got) == 0 {
			e.mu.Unlock()
			return
		}
		sig := e.got[0]
		e.got = e.got[1:]
		e.mu.Unlock()
		e.fn(sig)
	}
}

// running subscribes on the first Resume; after that the subscription stays until Cancel,
// suspended or not, so that signals during a suspension are kept.
func (e *signalEvents) running(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !on || e.started || e.dead {
		return
	}
	e.started = true
	// os/signal drops what does not fit: leave room for a burst while the relay is busy.
	e.ch = make(chan os.Signal, 8+len(e.sigs))
	e.quit = make(chan struct{})
	e.exited = make(chan struct{})
	signal.Notify(e.ch, e.sigs...)
	go e.relay(e.ch, e.quit, e.exited)
}

func (e *signalEvents) relay(ch <-chan os.Signal, quit <-chan struct{}, exited chan<- struct{}) {
	defer close(exited)
	for {
		select {
		case sig := <-ch:
			e.add(sig)
			e.s.fire()
		case <-quit:
			return
		}
	}
}

func (e *signalEvents) add(sig os.Signal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return
	}
	for _, x := range e.got {
		if x == sig {
			return
		}
	}
	e.got = append(e.got, sig)
}

// cancel unsubscribes and lets the relay goroutine end; join waits for it. The relay is
// never stuck meanwhile: its only wait besides the channels is for room on a full queue,
// which Cancel ends before it joins (and it may be called from the handler, on that queue).
func (e *signalEvents) cancel() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dead = true
	e.got = nil
	if e.started {
		signal.Stop(e.ch)
		close(e.quit)
	}
}

func (e *signalEvents) join() {
	e.mu.Lock()
	exited := e.exited
	e.mu.Unlock()
	if exited != nil {
		<-exited
	}
}
