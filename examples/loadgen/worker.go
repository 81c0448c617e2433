package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// A worker holds one process's share of the connections and runs the load on them. The
// coordinator drives it with commands and learns what happens from its events; in a child
// process both travel as JSON lines over stdin and stdout.

// command is what the coordinator asks of a worker.
type command struct {
	Cmd string `json:"cmd"` // cmdStart, cmdSend or cmdStop
	Seq int    `json:"seq,omitempty"`
}

const (
	cmdStart = "start" // every connection is open: run the mode
	cmdSend  = "send"  // broadcast Seq from the first connection
	cmdStop  = "stop"  // end now (idle and broadcast end so; echo ends by itself)
)

// event is what a worker reports.
type event struct {
	Ev        string        `json:"ev"` // one of the ev* constants
	Connected int           `json:"connected,omitempty"`
	Failed    int           `json:"failed,omitempty"`
	Msgs      uint64        `json:"msgs,omitempty"`
	Seq       int           `json:"seq,omitempty"`
	Got       int           `json:"got,omitempty"`
	Last      time.Duration `json:"last,omitempty"`
	Took      time.Duration `json:"took,omitempty"` // in evConnected: how long connecting took
	Result    *workerResult `json:"result,omitempty"`
	Errors    []string      `json:"errors,omitempty"`
}

const (
	evProgress  = "progress"  // Connected and Failed so far, or Msgs echoed so far
	evConnected = "connected" // the connect phase is over
	evBcast     = "bcast"     // every live connection got broadcast Seq; Last is the slowest
	evResult    = "result"    // the run is over
)

// workerResult is one worker's account of the run.
type workerResult struct {
	Msgs    uint64        `json:"msgs"`    // echoes received
	Errors  uint64        `json:"errors"`  // failed or wrong echoes
	Lost    int           `json:"lost"`    // connections that ended during the run
	Elapsed time.Duration `json:"elapsed"` // time the echo loops ran
	RTT     hist          `json:"rtt"`
	Errs    []string      `json:"errs,omitempty"`
}

// maxErrs is how many error messages a worker keeps to show.
const maxErrs = 5

type worker struct {
	cfg   config
	emit  func(event) // safe for concurrent use
	conns []*websocket.Conn

	mu   sync.Mutex
	errs []string
}

func (w *worker) noteErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if msg := err.Error(); len(w.errs) < maxErrs && !slices.Contains(w.errs, msg) {
		w.errs = append(w.errs, msg)
	}
}

func (w *worker) takeErrs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.errs
	w.errs = nil
	return e
}

// dialers is how many connections one worker opens at once.
const dialers = 128

// connect opens the worker's connections, paced by cfg.Rate, reporting progress; it ends
// with an evConnected event. A connection that fails is counted, not retried. Ending ctx
// cuts it short.
func (w *worker) connect(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.ConnectTimeout)
	defer cancel()
	client := &http.Client{Transport: w.transport()}
	slots := make([]*websocket.Conn, w.cfg.Conns)
	var next, opened, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range min(dialers, w.cfg.Conns) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(slots) || ctx.Err() != nil {
					return
				}
				if w.cfg.Rate > 0 && !sleepUntil(ctx, start.Add(time.Duration(float64(i)/w.cfg.Rate*float64(time.Second)))) {
					return
				}
				c, err := dial(ctx, client, w.cfg.target(i))
				if err != nil {
					failed.Add(1)
					w.noteErr(err)
					continue
				}
				c.SetReadLimit(maxSize + 1024)
				slots[i] = c
				opened.Add(1)
			}
		})
	}
	stopProgress := w.progress(func() event {
		return event{Ev: evProgress, Connected: int(opened.Load()), Failed: int(failed.Load())}
	})
	wg.Wait()
	stopProgress()
	for _, c := range slots {
		if c != nil {
			w.conns = append(w.conns, c)
		}
	}
	notTried := len(slots) - int(opened.Load()+failed.Load())
	if notTried > 0 {
		w.noteErr(fmt.Errorf("loadgen: %d connections not tried: %w", notTried, ctx.Err()))
	}
	w.emit(event{
		Ev: evConnected, Connected: len(w.conns), Failed: len(slots) - len(w.conns),
		Took: time.Since(start), Errors: w.takeErrs(),
	})
}

func dial(ctx context.Context, client *http.Client, url string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
	if resp != nil && resp.Body != nil && err != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial: %w", err)
	}
	return c, nil
}

// transport dials from the configured source addresses in turn, so that N connections to
// one server port need not fit in one address's ephemeral ports.
func (w *worker) transport() *http.Transport {
	var turn atomic.Uint64
	src := w.cfg.Src
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			if len(src) > 0 {
				a := src[turn.Add(1)%uint64(len(src))]
				d.LocalAddr = &net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()}
			}
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: false,
	}
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progressEvery is how often a worker reports progress.
const progressEvery = 250 * time.Millisecond

// progress emits what ev returns every progressEvery until the returned stop is called.
func (w *worker) progress(ev func() event) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				w.emit(ev())
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// run waits for cmdStart, runs the mode, emits evResult and closes the connections. It
// returns when the run is over; a closed cmds channel or an ended ctx stops it early.
func (w *worker) run(ctx context.Context, cmds <-chan command) {
	defer w.closeAll()
	for started := false; !started; {
		select {
		case c, ok := <-cmds:
			if !ok || c.Cmd == cmdStop {
				w.emit(event{Ev: evResult, Result: &workerResult{}})
				return
			}
			started = c.Cmd == cmdStart
		case <-ctx.Done():
			return
		}
	}
	// Past the coordinator's own bounds, a worker gives up by itself.
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Duration+time.Minute)
	defer cancel()
	var r workerResult
	switch w.cfg.Mode {
	case modeIdle:
		r = w.idle(ctx, cmds)
	case modeEcho:
		r = w.echo(ctx, cmds)
	case modeBroadcast:
		r = w.broadcast(ctx, cmds)
	}
	r.Errs = w.takeErrs()
	w.emit(event{Ev: evResult, Result: &r})
}

// waitStop waits for cmdStop, the end of cmds or of ctx, ignoring other commands.
func waitStop(ctx context.Context, cmds <-chan command) {
	for {
		select {
		case c, ok := <-cmds:
			if !ok || c.Cmd == cmdStop {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// closeAll closes every connection with 1000, all at once: each close waits for the
// server's answer (coder/websocket bounds that wait at 5s).
func (w *worker) closeAll() {
	var wg sync.WaitGroup
	for _, c := range w.conns {
		wg.Go(func() { _ = c.Close(websocket.StatusNormalClosure, "") })
	}
	wg.Wait()
	w.conns = nil
}

// idle holds the connections open, reading only to answer the server's pings, until
// stopped.
func (w *worker) idle(ctx context.Context, cmds <-chan command) workerResult {
	// Not ctx: ending a CloseRead context drops the connection without a close handshake,
	// and closeAll closes them properly.
	readers := make([]context.Context, len(w.conns))
	for i, c := range w.conns {
		readers[i] = c.CloseRead(context.Background())
	}
	waitStop(ctx, cmds)
	var r workerResult
	for _, rc := range readers {
		if rc.Err() != nil {
			r.Lost++
		}
	}
	return r
}
