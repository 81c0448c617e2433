package wsserver

import (
	"context"
	"errors"
	"slices"
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
	conns := slices.Clone(s.conns)
	s.ka.timer.Reset(s.tick())
	s.mu.Unlock()

	var pingAfter, pongAfter, idleAfter uint32
	if s.opts.PingInterval > 0 {
		pingAfter = s.ticksFor(s.opts.PingInterval)
		pongAfter = s.ticksFor(s.opts.PongTimeout)
	}
	if s.opts.IdleTimeout > 0 {
		idleAfter = s.ticksFor(s.opts.IdleTimeout)
	}
	for _, c := range conns {
		if c.state.Load() != stateOpen {
			continue
		}
		heard := c.heard.Load()
		if idleAfter > 0 && since(now, heard) >= idleAfter {
			c.closeWith(websocket.StatusGoingAway, "idle timeout", ErrIdleTimeout, ReasonIdleTimeout, true)
			continue
		}
		if c.flag(flagPaused) {
			// Our reader waits for the handler (backpressure): the peer is alive (it sent
			// more than we take), and its pong could not be read anyway.
			c.seen.Store(now)
			continue
		}
		if pingAfter == 0 {
			continue
		}
		seen := c.seen.Load()
		if c.flag(flagPinging) {
			// A ping this sweep sent (pingAt set; a ping goroutine handles the others): its
			// pong moves seen to or past pingAt.
			if at := c.pingAt.Load(); at != 0 {
				switch {
				case seen >= at:
					c.pingAt.Store(0)
					c.setFlag(flagPinging, false)
				case since(now, at) >= pongAfter:
					c.abort(websocket.StatusAbnormalClosure, ErrPingTimeout, ReasonPingTimeout)
				}
			}
			continue
		}
		// Due, and in this tick's share: connections opened together are pinged over
		// pingSpread ticks, not all at once.
		if since(now, max(heard, seen)) >= pingAfter && (now+uint32(c.id))%pingSpread == 0 && c.raiseFlag(flagPinging) {
			c.sendPing(now)
		}
	}
}

// since is how many ticks have passed from epoch e to now: 0 when e is later, which it is
// when another sweep (the timer fired again before this one ended) or a reader stored a
// newer epoch after this sweep took now.
func since(now, e uint32) uint32 {
	if int32(now-e) < 0 {
		return 0
	}
	return now - e
}

// pingSpread is how many ticks (a quarter of the interval each) the pings of connections
// that fell silent together are spread over.
const pingSpread = 4

// pingFrame is an unmasked ping with no payload.
var pingFrame = []byte{0x89, 0}

// sendPing writes a ping from the sweep without waiting and without a goroutine; the
// sweeps that follow look for its pong. Where the frame cannot be written that way
// (compression, TLS), a goroutine sends it and waits for the pong.
func (c *Conn) sendPing(now uint32) {
	c.pingAt.Store(now)
	switch c.bw.tryControl(&pingFrame) {
	case ctlSent:
	case ctlBusy: // a write is under way: the connection is not silent for long; next tick
		c.pingAt.Store(0)
		c.setFlag(flagPinging, false)
	default:
		c.pingAt.Store(0)
		go c.ping()
	}
}

// ping sends a ping through coder/websocket and waits for its pong for PongTimeout; a peer
// that does not answer is gone (it vanished without a close) and the connection is cut. A
// pong that could not be read because the reader was paused by backpressure meanwhile
// does not count as missing.
func (c *Conn) ping() {
	defer c.setFlag(flagPinging, false)
	pauses := c.pauses.Load()
	// Only connections that keep their coder/websocket Conn get here (compression, TLS, the
	// goroutine transport: the sweep's tryControl cannot write their ping), so the Conn
	// that awaits the pong is the one that reads it (coder.go).
	ws := c.ws.Load()
	if ws == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.PongTimeout)
	err := ws.Ping(ctx)
	cancel()
	switch {
	case err == nil, c.flag(flagPaused) || c.pauses.Load() != pauses:
		c.seen.Store(c.s.ka.epoch.Load())
	case errors.Is(err, context.DeadlineExceeded):
		c.abort(websocket.StatusAbnormalClosure, ErrPingTimeout, ReasonPingTimeout)
	}
}
