package wsserver

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A peer that answers pings stays connected through many ping intervals.
func TestPingsKeepHealthyPeers(t *testing.T) {
	cl := newCloses()
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }, Close: cl.record},
		Options{PingInterval: 20e6, PongTimeout: wait})
	pings := make(chan struct{}, 100)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			select {
			case pings <- struct{}{}:
			default:
			}
			return true
		},
	})
	require.NoError(t, err)
	defer c.CloseNow()
	// Pings are answered only while the client reads.
	got := make(chan string, 1)
	go func() {
		_, b, err := c.Read(ctx)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	for range 5 {
		testutil.Recv(t, pings, "a ping")
	}
	write(t, c, "still here")
	require.Equal(t, "still here", testutil.Recv(t, got, "the echo"))
	require.Empty(t, cl.errs, "the connection was closed")
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}

func TestHTTPServerDefaults(t *testing.T) {
	s := New(HandlerFuncs{}, Options{})
	hs := s.HTTPServer(":0", nil)
	require.Same(t, s, hs.Handler)
	require.Equal(t, defaultHandshake, hs.ReadHeaderTimeout)
	require.Equal(t, s.HandlerQueue().Width(), s.opts.HandlerWidth)
	require.True(t, strings.HasPrefix(s.HandlerQueue().Label(), "ws.handlers"))
	require.Equal(t, "close-slow", CloseSlow.String())
	require.Equal(t, "drop-newest", DropNewest.String())
	require.Panics(t, func() { New(nil, Options{}) })
}

// A sweep that runs late (the timer fired again before the previous sweep ended, or a
// reader stored a newer epoch after the sweep took its own) must not read an epoch later
// than its own as a long silence: that closed live connections for idleness, and under
// the sweep's pings, for a missing pong.
func TestSweepWithANewerEpochClosesNothing(t *testing.T) {
	s := New(HandlerFuncs{}, Options{IdleTimeout: time.Minute, PingInterval: time.Minute, PongTimeout: time.Minute})
	c := fakeConn(s, 1)
	defer keepaliveOver(s, c)()
	next := s.ka.epoch.Load() + 2 // the epoch of a sweep that is still to come
	c.heard.Store(next)
	c.seen.Store(next - 1) // no pong yet for the ping sent at next
	c.setFlag(flagPinging, true)
	c.pingAt.Store(next)
	s.sweep()
	require.Equal(t, stateOpen, c.state.Load(), "closed: %v", c.causeLocked())
	require.True(t, c.flag(flagPinging))
}

// Connections that fell silent together (opened in one burst, say) are pinged over
// pingSpread sweeps, a share per sweep, not all in one: a sweep must not wake every
// connection at once, nor their pongs wake every reader at once.
func TestKeepalivePingsAreSpreadOverSweeps(t *testing.T) {
	const n = 40
	// No pong comes, and none is due within the test's sweeps.
	s := New(HandlerFuncs{}, Options{PingInterval: time.Hour, PongTimeout: 10 * time.Hour})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	conns := make([]*Conn, n)
	for i := range conns {
		client, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer client.Close()
		server, err := ln.Accept()
		require.NoError(t, err)
		defer server.Close()
		c := fakeConn(s, uint64(i+1))
		c.bw = newBatchWriter(server, true) // the sweep's ping is a non-blocking write
		conns[i] = c
	}
	defer keepaliveOver(s, conns...)()
	pinged := 0
	for sweep := 1; sweep <= 8; sweep++ {
		s.sweep()
		now := 0
		for _, c := range conns {
			if c.flag(flagPinging) && c.pingAt.Load() == s.ka.epoch.Load() {
				now++
			}
		}
		require.LessOrEqual(t, now, n/4, "sweep %d pinged %d of %d connections at once", sweep, now, n)
		pinged += now
	}
	require.Equal(t, n, pinged, "every silent connection is pinged within the spread")
}

// keepaliveOver registers conns with s and starts its keepalive; the func it returns stops it.
func keepaliveOver(s *Server, conns ...*Conn) (stop func()) {
	s.mu.Lock()
	for _, c := range conns {
		s.addLocked(c)
	}
	s.startKeepaliveLocked()
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.stopKeepaliveLocked()
		s.mu.Unlock()
	}
}
