package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

func TestMain(m *testing.M) {
	if echoMain() { // the test binary as examples/echo, for the interop tests
		return
	}
	goleak.VerifyTestMain(m)
}

// TestEchoServer runs the example for real on a loopback port: echo, broadcast, pprof and a
// graceful stop.
func TestEchoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, true, wsserver.Options{}) }()

	url := "ws://" + ln.Addr().String() + "/ws"
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _, err := websocket.Dial(dctx, url, nil)
	require.NoError(t, err)
	defer a.CloseNow()
	b, _, err := websocket.Dial(dctx, url, nil)
	require.NoError(t, err)
	defer b.CloseNow()

	require.NoError(t, a.Write(dctx, websocket.MessageText, []byte("hello")))
	_, got, err := a.Read(dctx)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got))

	// A broadcast reaches both; b's join is certain once b has had an echo back.
	require.NoError(t, b.Write(dctx, websocket.MessageText, []byte("ping")))
	_, got, err = b.Read(dctx)
	require.NoError(t, err)
	require.Equal(t, "ping", string(got))
	require.NoError(t, a.Write(dctx, websocket.MessageBinary, []byte("Bcast")))
	for _, c := range []*websocket.Conn{a, b} {
		_, got, err = c.Read(dctx)
		require.NoError(t, err)
		require.Equal(t, "Bcast", string(got))
	}

	resp, err := http.Get("http://" + ln.Addr().String() + "/debug/pprof/goroutine?debug=1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "goroutine profile")
	http.DefaultClient.CloseIdleConnections()

	stop()
	for _, c := range []*websocket.Conn{a, b} {
		_, _, err = c.Read(dctx)
		require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err))
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}
