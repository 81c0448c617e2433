package wsserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// dialStatus tries an upgrade and returns the HTTP status of a refusal.
func dialStatus(t *testing.T, url string, hdr http.Header) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err == nil {
		c.CloseNow()
		return http.StatusSwitchingProtocols
	}
	require.NotNil(t, resp, "dial failed without a response: %v", err)
	return resp.StatusCode
}

func TestRejectedBeforeUpgrade(t *testing.T) {
	opened := make(chan struct{}, 8)
	auth := func(r *http.Request) (any, error) {
		switch r.Header.Get("X-Token") {
		case "good":
			return "ann", nil
		case "banned":
			return nil, fmt.Errorf("user banned: %w", ErrForbidden)
		}
		return nil, fmt.Errorf("no token")
	}
	ts := start(t, HandlerFuncs{Open: func(*Conn) { opened <- struct{}{} }}, Options{Authenticate: auth, MaxConns: 1})
	require.Equal(t, http.StatusUnauthorized, dialStatus(t, ts.url, nil))
	require.Equal(t, http.StatusForbidden, dialStatus(t, ts.url, http.Header{"X-Token": {"banned"}}))
	require.Equal(t, http.StatusForbidden, dialStatus(t, ts.url, http.Header{"X-Token": {"good"}, "Origin": {"http://evil.example"}}))

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	first, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{HTTPHeader: http.Header{"X-Token": {"good"}}})
	require.NoError(t, err)
	testutil.Recv(t, opened, "OnOpen")
	require.Equal(t, http.StatusServiceUnavailable, dialStatus(t, ts.url, http.Header{"X-Token": {"good"}}), "MaxConns 1")
	require.NoError(t, first.Close(websocket.StatusNormalClosure, ""))
	// The slot is free once OnClose has run; the server reports it through Stats.
	require.Eventually(t, func() bool { return ts.Stats().Connections == 0 }, wait, time.Millisecond)
	second, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{HTTPHeader: http.Header{"X-Token": {"good"}}})
	require.NoError(t, err)
	testutil.Recv(t, opened, "OnOpen")
	second.CloseNow()

	require.NoError(t, ts.Shutdown(ctx))
	require.Equal(t, http.StatusServiceUnavailable, dialStatus(t, ts.url, http.Header{"X-Token": {"good"}}), "after Shutdown")
	require.Equal(t, uint64(5), ts.Stats().Rejected)
	require.Equal(t, uint64(2), ts.Stats().Accepted)
}

// A client that never finishes its upgrade request is dropped after HandshakeTimeout (the
// http.Server from HTTPServer reads headers under it).
func TestSlowlorisHandshakeDropped(t *testing.T) {
	s := New(HandlerFuncs{}, Options{HandshakeTimeout: 100 * time.Millisecond})
	hs := s.HTTPServer("127.0.0.1:0", nil)
	require.Equal(t, 100*time.Millisecond, hs.ReadHeaderTimeout)
	ln, err := net.Listen("tcp", hs.Addr)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	defer func() {
		require.NoError(t, hs.Close())
		require.ErrorIs(t, testutil.Recv(t, served, "Serve to return"), http.ErrServerClosed)
	}()
	nc, err := net.DialTimeout("tcp", ln.Addr().String(), wait)
	require.NoError(t, err)
	defer nc.Close()
	_, err = io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n") // never ends
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(wait)))
	// The server closes the connection (possibly after a 408): reading reaches EOF, not our
	// deadline.
	_, err = io.ReadAll(bufio.NewReader(nc))
	require.NoError(t, err, "the server did not drop the slow client")
	require.Zero(t, s.Stats().Accepted)
}
