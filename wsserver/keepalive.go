package wsserver

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// keepalive finds dead and idle peers without a timer per connection: one server-wide timer
// ticks (a quarter of the shortest interval) while connections exist, and each connection
// records the tick of its last message and of its last pong. A tick pings the connections
// silent for PingInterval and closes those idle for IdleTimeout.
type keepalive struct {
	epoch atomic.Uint32 // ticks so far
	timer *time.Timer   // nil while there are no connections; guarded by Server.mu
}

func (s *Server) tick() time.Duration {
	var d time.Duration
	if s.opts.PingInterval > 0 {
		d = s.opts.PingInterval
	}
	if it := s.opts.IdleTimeout; it > 0 && (d == 0 || it < d) {
		d = it
	}
	return d / 4
}

func (s *Server) startKeepaliveLocked() {
	if s.ka.timer != nil {
		return
	}
	if d := s.tick(); d > 0 {
		s.ka.timer = time.AfterFunc(d, s.sweep)
	}
}

func (s *Server) stopKeepaliveLocked() {
	if s.ka.timer != nil {
		s.ka.timer.Stop()
		s.ka.timer = nil
	}
}

// ticksFor is how many ticks d spans, rounded up.
func (s *Server) ticksFor(d time.Duration) uint32 {
	t := s.tick()
	return uint32((d + t - 1) / t)
}

// sweep runs on the timer's goroutine once per tick.
func (s *Server) sweep() {
	now := s.ka.epoch.Add(1)
	s.mu.Lock()
	if s.ka.timer == nil || len(s.conns) == 0 {
		s.mu.Unlock()
		return
	}
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.ka.timer.Reset(s.tick())
	s.mu.Unlock()

	var pingAfter, idleAfter uint32
	if s.opts.PingInterval > 0 {
		pingAfter = s.ticksFor(s.opts.PingInterval)
	}
	if s.opts.IdleTimeout > 0 {
		idleAfter = s.ticksFor(s.opts.IdleTimeout)
	}
	for _, c := range conns {
		if c.state.Load() != stateOpen {
			continue
		}
		heard := c.heard.Load()
		if idleAfter > 0 && now-heard >= idleAfter {
			c.closeWith(websocket.StatusGoingAway, "idle timeout", ErrIdleTimeout, ReasonIdleTimeout, true)
			continue
		}
		if c.paused.Load() {
			// Our reader waits for the handler (backpressure): the peer is alive (it sent
			// more than we take), and its pong could not be read anyway.
			c.seen.Store(now)
			continue
		}
		last := max(heard, c.seen.Load())
		if pingAfter > 0 && now-last >= pingAfter && c.pinging.CompareAndSwap(false, true) {
			go c.ping()
		}
	}
}

// ping sends a ping and waits for its pong for PongTimeout; a peer that does not answer is
// gone (it vanished without a close) and the connection is cut.
// A pong that could not be read because the reader was paused by backpressure meanwhile
// does not count as missing.
func (c *Conn) ping() {
	defer c.pinging.Store(false)
	pauses := c.pauses.Load()
	ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.PongTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	switch {
	case err == nil, c.paused.Load() || c.pauses.Load() != pauses:
		c.seen.Store(c.s.ka.epoch.Load())
	case errors.Is(err, context.DeadlineExceeded):
		c.abort(websocket.StatusAbnormalClosure, ErrPingTimeout, ReasonPingTimeout)
	}
}
