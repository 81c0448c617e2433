package dispatch

import (
	"os"
	"os/signal"
	"sync"

	"github.com/dispatchkit/dispatchkit/queue"
)

// NewSignal returns a source that runs fn on q with each signal in sigs the process gets
// (DISPATCH_SOURCE_TYPE_SIGNAL), through os/signal. The same signal arriving again before fn
// has run for it is delivered once. While it runs (between Resume and Cancel) the source
// holds one goroutine, which os/signal's channel needs; Cancel stops delivery (signal.Stop)
// and ends it.
func NewSignal(q *queue.Queue, fn func(os.Signal), sigs ...os.Signal) *Source {
	st := &signalState{}
	s := &Source{}
	s.init(q,
		func() bool { return st.takeable() },
		func() {
			for _, sig := range st.take() {
				fn(sig)
			}
		},
		func() { st.start(s, sigs) },
		func() { st.stop() },
	)
	return s
}

type signalState struct {
	mu      sync.Mutex
	got     []os.Signal // distinct signals waiting, in arrival order
	ch      chan os.Signal
	quit    chan struct{}
	stopped bool
	wg      sync.WaitGroup
}

func (st *signalState) start(s *Source, sigs []os.Signal) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopped {
		return
	}
	st.ch = make(chan os.Signal, 8)
	st.quit = make(chan struct{})
	signal.Notify(st.ch, sigs...)
	ch, quit := st.ch, st.quit
	st.wg.Go(func() {
		for {
			select {
			case sig := <-ch:
				st.add(sig)
				s.fire()
			case <-quit:
				return
			}
		}
	})
}

func (st *signalState) add(sig os.Signal) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, x := range st.got {
		if x == sig {
			return
		}
	}
	st.got = append(st.got, sig)
}

func (st *signalState) stop() {
	st.mu.Lock()
	st.stopped = true
	if st.ch != nil {
		signal.Stop(st.ch)
		close(st.quit)
	}
	st.mu.Unlock()
	st.wg.Wait()
}

func (st *signalState) takeable() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.got) > 0
}

func (st *signalState) take() []os.Signal {
	st.mu.Lock()
	defer st.mu.Unlock()
	got := st.got
	st.got = nil
	return got
}
