package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// member is one worker as the coordinator sees it: in this process, or in a child process.
type member interface {
	send(command)
	events() <-chan event // closed once the worker is gone
	kill()                // end a member that does not stop by itself
	wait() error          // after events closed: how the member ended
}

type tagged struct {
	from int
	ev   event
	gone bool // from's events ended
}

// bagg is one broadcast as the coordinator assembles it from the workers' reports.
type bagg struct {
	reported map[int]bool
	got      int
	last     time.Duration
}

// coord runs the phases of a run over its members and gathers their events.
type coord struct {
	cfg      config
	members  []member
	all      chan tagged
	progress io.Writer // nil: no progress line
	phase    string
	started  time.Time // of the phase

	gone      []bool
	connected []*event // each member's evConnected
	prog      []event  // each member's last progress
	results   []*workerResult
	cur       *bagg // the broadcast in flight, nil between broadcasts
	curSeq    int
	sent      int // broadcasts sent
}

func newCoord(cfg config, members []member, progress io.Writer) *coord {
	c := &coord{
		cfg: cfg, members: members, progress: progress,
		all:       make(chan tagged, 1024),
		gone:      make([]bool, len(members)),
		connected: make([]*event, len(members)),
		prog:      make([]event, len(members)),
		results:   make([]*workerResult, len(members)),
	}
	for i, m := range members {
		go func() {
			for ev := range m.events() {
				c.all <- tagged{from: i, ev: ev}
			}
			c.all <- tagged{from: i, gone: true}
		}()
	}
	return c
}

func (c *coord) handle(t tagged) {
	if t.gone {
		c.gone[t.from] = true
		return
	}
	switch ev := t.ev; ev.Ev {
	case evProgress:
		c.prog[t.from] = ev
	case evConnected:
		c.connected[t.from] = &ev
	case evResult:
		c.results[t.from] = ev.Result
	case evBcast:
		b := c.cur
		if b == nil || ev.Seq != c.curSeq || b.reported[t.from] {
			return // late, for a broadcast given up on
		}
		b.reported[t.from] = true
		b.got += ev.Got
		b.last = max(b.last, ev.Last)
	}
}

// progressEvery is how often the progress line is redrawn.
const redrawEvery = 500 * time.Millisecond

// until handles events until cond holds (true), or deadline passes or ctx ends (false).
func (c *coord) until(ctx context.Context, deadline time.Time, cond func() bool) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	tick := time.NewTicker(redrawEvery)
	defer tick.Stop()
	for !cond() {
		select {
		case t := <-c.all:
			c.handle(t)
		case <-tick.C:
			c.redraw()
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// each is true when f holds for every member that is still there.
func (c *coord) each(f func(i int) bool) func() bool {
	return func() bool {
		for i := range c.members {
			if !c.gone[i] && !f(i) {
				return false
			}
		}
		return true
	}
}

func (c *coord) sendAll(cmd command) {
	for i, m := range c.members {
		if !c.gone[i] {
			m.send(cmd)
		}
	}
}

func (c *coord) setPhase(p string) {
	c.phase = p
	c.started = time.Now()
	c.redraw()
}

// redraw rewrites the progress line on the terminal.
func (c *coord) redraw() {
	if c.progress == nil {
		return
	}
	var line string
	el := time.Since(c.started).Truncate(100 * time.Millisecond)
	switch c.phase {
	case "connect":
		var n, f int
		for _, p := range c.prog {
			n += p.Connected
			f += p.Failed
		}
		line = fmt.Sprintf("connecting %d/%d, %d failed, %v", n, c.cfg.Conns, f, el)
	case modeEcho:
		var m uint64
		for _, p := range c.prog {
			m += p.Msgs
		}
		line = fmt.Sprintf("echo %v/%v, %d messages", el, c.cfg.Duration, m)
	case modeBroadcast:
		line = fmt.Sprintf("broadcast %d/%d, %v", c.sent, c.cfg.Broadcasts, el)
	case "":
		return
	default:
		line = fmt.Sprintf("%s %v/%v", c.phase, el, c.cfg.Duration)
	}
	fmt.Fprintf(c.progress, "\rloadgen: %-60s", line)
}

// coordinate reads the server's memory, starts the members, runs the whole load over them
// and returns what was measured. The members are always ended, whatever happens.
func coordinate(ctx context.Context, cfg config, start func() ([]member, error), progress io.Writer) (rep report, err error) {
	rep = newReport(cfg)
	rss, cpu := rssReader(cfg.ServerPID), cpuReader(cfg.ServerPID)
	if rep.RSSBefore, err = rss(); err != nil {
		return rep, err
	}
	cpu0, err := cpu()
	if err != nil {
		return rep, err
	}
	members, err := start()
	if err != nil {
		return rep, err
	}
	c := newCoord(cfg, members, progress)
	defer func() {
		if progress != nil {
			fmt.Fprintln(progress)
		}
		err = errors.Join(err, c.finish())
	}()

	c.setPhase("connect")
	allConnected := c.each(func(i int) bool { return c.connected[i] != nil })
	if !c.until(ctx, time.Now().Add(cfg.ConnectTimeout+15*time.Second), allConnected) {
		return rep, fmt.Errorf("loadgen: connecting: %w", cmp(ctx.Err(), errTimeout))
	}
	rep.connected(c.connected)
	if rep.RSSConnected, err = rss(); err != nil {
		return rep, err
	}
	cpu1, err := cpu()
	if err != nil {
		return rep, err
	}
	rep.CPUConnect = (cpu1 - cpu0).Seconds()
	if rep.Connected == 0 {
		return rep, errors.New("loadgen: no connection opened")
	}

	c.sendAll(command{Cmd: cmdStart})
	c.setPhase(cfg.Mode)
	begun := time.Now()
	end := begun.Add(cfg.Duration)
	never := func() bool { return false }
	var cpu2 time.Duration
	var errCPU error
	switch cfg.Mode {
	case modeIdle:
		c.until(ctx, end, never)
		rep.RSSEnd, err = rss()
		cpu2, errCPU = cpu()
		c.sendAll(command{Cmd: cmdStop})
	case modeEcho:
		// Memory under load, read before the loops end and the connections close; CPU
		// when the loops end (the workers stop theirs at the same moment).
		c.until(ctx, time.Now().Add(cfg.Duration*9/10), never)
		rep.RSSEnd, err = rss()
		c.until(ctx, end, never)
		cpu2, errCPU = cpu()
	case modeBroadcast:
		c.broadcasts(ctx, end, &rep)
		cpu2, errCPU = cpu()
		rep.RSSEnd, err = rss()
		c.sendAll(command{Cmd: cmdStop})
	}
	if err = cmp(err, errCPU); err != nil {
		return rep, err
	}
	rep.CPURun, rep.CPURunWall = (cpu2 - cpu1).Seconds(), time.Since(begun).Seconds()
	allResults := c.each(func(i int) bool { return c.results[i] != nil })
	if !c.until(ctx, end.Add(30*time.Second), allResults) {
		return rep, fmt.Errorf("loadgen: waiting for results: %w", cmp(ctx.Err(), errTimeout))
	}
	rep.results(c.results)
	return rep, ctx.Err()
}

var errTimeout = errors.New("timed out")

// cmp returns the first non-nil error.
func cmp(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// bcastWait bounds the wait for one broadcast to reach everyone.
const bcastWait = 10 * time.Second

// broadcasts has the first connection send cfg.Broadcasts broadcasts, one after another,
// each once the last receiver got the one before, and records the last receiver's latency.
func (c *coord) broadcasts(ctx context.Context, end time.Time, rep *report) {
	sender := -1
	for i, ev := range c.connected {
		if ev != nil && ev.Connected > 0 {
			sender = i
			break
		}
	}
	seq := c.warmUp(ctx, end, sender)
	for n := 0; n < c.cfg.Broadcasts && sender >= 0 && time.Now().Before(end) && ctx.Err() == nil; n, seq = n+1, seq+1 {
		b := &bagg{reported: make(map[int]bool)}
		c.cur, c.curSeq = b, seq
		c.members[sender].send(command{Cmd: cmdSend, Seq: seq})
		c.sent++
		rep.Broadcasts++
		done := c.each(func(i int) bool { return c.connected[i].Connected == 0 || b.reported[i] })
		if c.until(ctx, minTime(end, time.Now().Add(bcastWait)), done) {
			rep.BroadcastsComplete++
			rep.lasts = append(rep.lasts, b.last)
		}
		rep.BroadcastDeliveries += b.got
		c.cur = nil
	}
}

// warmUp sends unmeasured broadcasts, one at a time, until one reaches every connection
// (bounded by bcastWait), and returns the next sequence number. A server learns of a
// connection's room when its open handler has run, after the handshake that loadgen counts
// as connected (examples/echo joins the room in OnOpen, on the connection's queue): a
// broadcast sent at once could miss the last connections, and the run would count a
// server's join delay as a lost broadcast.
func (c *coord) warmUp(ctx context.Context, end time.Time, sender int) int {
	seq := 0
	if sender < 0 {
		return seq
	}
	stop := minTime(end, time.Now().Add(bcastWait))
	for time.Now().Before(stop) && ctx.Err() == nil {
		b := &bagg{reported: make(map[int]bool)}
		c.cur, c.curSeq = b, seq
		c.members[sender].send(command{Cmd: cmdSend, Seq: seq})
		seq++
		done := c.each(func(i int) bool { return c.connected[i].Connected == 0 || b.reported[i] })
		ok := c.until(ctx, minTime(stop, time.Now().Add(warmTry)), done)
		c.cur = nil
		if ok {
			break
		}
	}
	return seq
}

// warmTry is how long a warm-up broadcast is waited for before the next one is sent.
const warmTry = time.Second

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// finish stops every member and waits for it to go; one that does not within 30s is
// killed.
func (c *coord) finish() error {
	c.sendAll(command{Cmd: cmdStop})
	allGone := func() bool {
		for _, g := range c.gone {
			if !g {
				return false
			}
		}
		return true
	}
	if !c.until(context.Background(), time.Now().Add(30*time.Second), allGone) {
		for i, m := range c.members {
			if !c.gone[i] {
				m.kill()
			}
		}
		c.until(context.Background(), time.Now().Add(10*time.Second), allGone)
	}
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, m := range c.members {
		wg.Go(func() {
			if err := m.wait(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
