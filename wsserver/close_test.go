package wsserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// dialTCP dials like dial and also returns the client's TCP connection.
func dialTCP(t *testing.T, url string) (*websocket.Conn, *net.TCPConn) {
	t.Helper()
	var tcp *net.TCPConn
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			tcp = nc.(*net.TCPConn)
		}
		return nc, err
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	require.NoError(t, err)
	return c, tcp
}

// Every way a connection can end calls OnClose exactly once, with the right error, and the
// client sees the right close code.
func TestOnCloseOnceForEveryEnding(t *testing.T) {
	type tc struct {
		name   string
		opts   Options
		act    func(t *testing.T, ts *testServer, c *websocket.Conn, tcp *net.TCPConn)
		client websocket.StatusCode // what the client reads; 0: it does not read
		code   websocket.StatusCode // CloseStatus of OnClose's error; -1: nil error
		cause  error                // errors.Is of OnClose's error
		panics bool
	}
	cases := []tc{
		{name: "client close normal", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
		}, code: -1},
		{name: "client going away", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			require.NoError(t, c.Close(websocket.StatusGoingAway, ""))
		}, code: -1},
		{name: "client close with code", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			require.NoError(t, c.Close(4000, "app"))
		}, code: 4000},
		{name: "server close normal", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			write(t, c, "close 1000")
		}, client: websocket.StatusNormalClosure, code: -1},
		{name: "server close with code", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			write(t, c, "close 4001")
		}, client: 4001, code: 4001, cause: ErrClosed},
		{name: "read error (EOF without close frame)", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			require.NoError(t, c.CloseNow())
		}, code: websocket.StatusAbnormalClosure, cause: ErrConnectionLost},
		{name: "TCP reset", act: func(t *testing.T, _ *testServer, _ *websocket.Conn, tcp *net.TCPConn) {
			require.NoError(t, tcp.SetLinger(0))
			require.NoError(t, tcp.Close())
		}, code: websocket.StatusAbnormalClosure, cause: ErrConnectionLost},
		{name: "ping timeout", opts: Options{PingInterval: 40 * time.Millisecond, PongTimeout: 80 * time.Millisecond},
			act:  func(*testing.T, *testServer, *websocket.Conn, *net.TCPConn) {}, // never reads: never pongs
			code: websocket.StatusAbnormalClosure, cause: ErrPingTimeout},
		{name: "idle timeout", opts: Options{IdleTimeout: 80 * time.Millisecond},
			act:    func(*testing.T, *testServer, *websocket.Conn, *net.TCPConn) {},
			client: websocket.StatusGoingAway, code: websocket.StatusGoingAway, cause: ErrIdleTimeout},
		{name: "shutdown", act: func(t *testing.T, ts *testServer, _ *websocket.Conn, _ *net.TCPConn) {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				_ = ts.Shutdown(ctx)
			}()
		}, client: websocket.StatusGoingAway, code: websocket.StatusGoingAway, cause: ErrShutdown},
		{name: "panic", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			write(t, c, "panic")
		}, client: websocket.StatusInternalError, code: websocket.StatusInternalError, cause: ErrHandlerPanic, panics: true},
		{name: "too big", opts: Options{ReadLimit: 16}, act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			write(t, c, strings.Repeat("x", 100))
		}, client: websocket.StatusMessageTooBig, code: websocket.StatusMessageTooBig, cause: ErrMessageTooBig},
		{name: "invalid UTF-8", act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			require.NoError(t, c.Write(ctx, websocket.MessageText, []byte{'o', 'k', 0xff, 0xfe}))
		}, client: websocket.StatusInvalidFramePayloadData, code: websocket.StatusInvalidFramePayloadData, cause: ErrInvalidUTF8},
		{name: "rate limit", opts: Options{RateLimit: 1, RateBurst: 3}, act: func(t *testing.T, _ *testServer, c *websocket.Conn, _ *net.TCPConn) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			for range 10 {
				if c.Write(ctx, websocket.MessageText, []byte("m")) != nil {
					return // closed already
				}
			}
		}, client: websocket.StatusPolicyViolation, code: websocket.StatusPolicyViolation, cause: ErrRateLimited},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCloses()
			var panicked atomic.Int32
			opts := tt.opts
			opts.PanicHandler = func(c *Conn, r any, stack []byte) {
				require.Equal(t, "boom", r)
				require.NotEmpty(t, stack)
				panicked.Add(1)
			}
			opened := make(chan struct{}, 1)
			h := HandlerFuncs{
				Open: func(*Conn) { opened <- struct{}{} },
				Message: func(c *Conn, m Message) {
					s := string(m.Data)
					switch {
					case s == "panic":
						panic("boom")
					case strings.HasPrefix(s, "close "):
						code := websocket.StatusNormalClosure
						if s == "close 4001" {
							code = 4001
						}
						require.NoError(t, c.Close(code, "bye"))
					}
				},
				Close: cl.record,
			}
			ts := start(t, h, opts)
			c, tcp := dialTCP(t, ts.url)
			defer c.CloseNow()
			testutil.Recv(t, opened, "OnOpen")
			tt.act(t, ts, c, tcp)
			if tt.client != 0 {
				require.Equal(t, tt.client, readUntilClosed(t, c))
			}
			err := testutil.Recv(t, cl.errs, "OnClose")
			if tt.code == -1 {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				require.Equal(t, tt.code, websocket.CloseStatus(err), "OnClose got %v", err)
			}
			if tt.cause != nil {
				require.ErrorIs(t, err, tt.cause)
			}
			if tt.panics {
				require.Equal(t, int32(1), panicked.Load())
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := ts.Shutdown(ctx); tt.name != "shutdown" || !errors.Is(err, ErrShutdown) {
				require.NoError(t, err)
			}
			cl.each(t)
			require.Len(t, cl.count, 1)
			require.Zero(t, ts.Stats().Connections)
		})
	}
}

// A panic in OnOpen or OnClose does not take the server down either.
func TestPanicInOpenAndClose(t *testing.T) {
	panics := make(chan any, 4)
	closed := make(chan error, 1)
	ts := start(t, HandlerFuncs{
		Open:  func(c *Conn) { panic("open") },
		Close: func(c *Conn, err error) { closed <- err; panic("close") },
	}, Options{PanicHandler: func(c *Conn, r any, _ []byte) { panics <- r }})
	c := dial(t, ts.url)
	defer c.CloseNow()
	require.Equal(t, websocket.StatusInternalError, readUntilClosed(t, c))
	require.Equal(t, "open", testutil.Recv(t, panics, "panic in OnOpen"))
	require.ErrorIs(t, testutil.Recv(t, closed, "OnClose"), ErrHandlerPanic)
	require.Equal(t, "close", testutil.Recv(t, panics, "panic in OnClose"))
	// The server goes on.
	c2 := dial(t, ts.url)
	defer c2.CloseNow()
	require.Equal(t, websocket.StatusInternalError, readUntilClosed(t, c2))
}

// Fragmented messages are reassembled; an oversized fragmented one is refused like any other.
func TestFragmentedMessages(t *testing.T) {
	got := make(chan string, 1)
	cl := newCloses()
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { got <- string(m.Data) }, Close: cl.record},
		Options{ReadLimit: 64})
	c := dial(t, ts.url)
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w, err := c.Writer(ctx, websocket.MessageText)
	require.NoError(t, err)
	for _, part := range []string{"frag", "men", "ted"} {
		_, err = w.Write([]byte(part))
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	require.Equal(t, "fragmented", testutil.Recv(t, got, "the reassembled message"))

	w, err = c.Writer(ctx, websocket.MessageBinary)
	require.NoError(t, err)
	for range 10 {
		if _, err = w.Write([]byte(strings.Repeat("y", 20))); err != nil {
			break
		}
	}
	_ = w.Close()
	require.Equal(t, websocket.StatusMessageTooBig, readUntilClosed(t, c))
	require.ErrorIs(t, testutil.Recv(t, cl.errs, "OnClose"), ErrMessageTooBig)
}

// A text message split inside a UTF-8 sequence across fragments is valid; only the whole
// message is checked.
func TestUTF8CheckedOnWholeMessage(t *testing.T) {
	got := make(chan string, 1)
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { got <- string(m.Data) }}, Options{})
	c := dial(t, ts.url)
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w, err := c.Writer(ctx, websocket.MessageText)
	require.NoError(t, err)
	euro := []byte("€")
	_, err = w.Write(euro[:1])
	require.NoError(t, err)
	_, err = w.Write(euro[1:])
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.Equal(t, "€", testutil.Recv(t, got, "message"))
	// Binary messages are not checked.
	require.NoError(t, c.Write(ctx, websocket.MessageBinary, []byte{0xff}))
	require.Equal(t, "\xff", testutil.Recv(t, got, "binary message"))
}

var _ = errors.New
