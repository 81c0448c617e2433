// Package peertest checks that a benchmark peer server behaves as examples/echo does, so
// that the load generator measures the same work on every server.
package peertest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// Run serves with run on a loopback listener, checks echo and broadcast over three
// connections, then cancels run's context and requires a clean stop that closes the
// clients.
func Run(t *testing.T, run func(context.Context, net.Listener) error) {
	t.Helper()
	check(t, run, true)
}

// RunWithoutEmpty is Run for a server that never delivers an empty message to its handler
// (nbio v1.6.8 drops them); the loads never send one.
func RunWithoutEmpty(t *testing.T, run func(context.Context, net.Listener) error) {
	t.Helper()
	check(t, run, false)
}

func check(t *testing.T, run func(context.Context, net.Listener) error, empty bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln) }()

	url := "ws://" + ln.Addr().String() + "/ws"
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns := make([]*websocket.Conn, 3)
	for i := range conns {
		c, _, err := websocket.Dial(dctx, url, nil)
		require.NoError(t, err)
		defer c.CloseNow()
		conns[i] = c
	}
	// An echo proves each connection is registered before the broadcast.
	for i, c := range conns {
		typ := websocket.MessageText
		if i == 1 {
			typ = websocket.MessageBinary
		}
		require.NoError(t, c.Write(dctx, typ, []byte("hello")))
		gotTyp, got, err := c.Read(dctx)
		require.NoError(t, err)
		require.Equal(t, typ, gotTyp, "echo keeps the message type")
		require.Equal(t, "hello", string(got))
	}
	require.NoError(t, conns[2].Write(dctx, websocket.MessageText, []byte("Bnews")))
	for _, c := range conns {
		_, got, err := c.Read(dctx)
		require.NoError(t, err)
		require.Equal(t, "Bnews", string(got), "a broadcast reaches every connection, the sender too")
	}
	// An empty message is echoed, not broadcast.
	if empty {
		require.NoError(t, conns[0].Write(dctx, websocket.MessageText, nil))
		_, got, err := conns[0].Read(dctx)
		require.NoError(t, err)
		require.Empty(t, got)
	}

	// Reading answers the server's close handshake, so the stop need not wait it out.
	stop()
	for _, c := range conns {
		_, _, err := c.Read(dctx)
		require.Error(t, err, "stopping the server closes its connections")
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not stop within 15s")
	}
}
