package wsserver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func echo() Handler {
	return HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }}
}

func TestEcho(t *testing.T) {
	ts := start(t, echo(), Options{})
	c := dial(t, ts.url)
	defer c.CloseNow()
	for i := range 10 {
		write(t, c, "hello "+strconv.Itoa(i))
		typ, s := read(t, c)
		require.Equal(t, websocket.MessageText, typ)
		require.Equal(t, "hello "+strconv.Itoa(i), s)
	}
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

// 1,000 messages on each of 100 connections reach the handler in order, and one
// connection's handler never runs twice at once.
func TestOrderPerConnectionUnderLoad(t *testing.T) {
	const conns, msgs = 100, 1000
	type state struct {
		running atomic.Int32
		next    int // touched only on the connection's queue
	}
	var mu sync.Mutex
	states := map[*Conn]*state{}
	var failures atomic.Int64
	done := make(chan struct{}, conns)
	h := HandlerFuncs{
		Open: func(c *Conn) {
			mu.Lock()
			states[c] = &state{}
			mu.Unlock()
		},
		Message: func(c *Conn, m Message) {
			mu.Lock()
			st := states[c]
			mu.Unlock()
			if st.running.Add(1) != 1 {
				failures.Add(1)
			}
			if n, _ := strconv.Atoi(string(m.Data)); n != st.next {
				failures.Add(1)
			}
			st.next++
			if st.next == msgs {
				done <- struct{}{}
			}
			st.running.Add(-1)
		},
	}
	ts := start(t, h, Options{})
	var wg sync.WaitGroup
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		clients[i] = dial(t, ts.url)
	}
	for _, c := range clients {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for j := range msgs {
				if err := c.Write(ctx, websocket.MessageText, []byte(strconv.Itoa(j))); err != nil {
					failures.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	for range conns {
		testutil.Recv(t, done, "all messages handled")
	}
	require.Zero(t, failures.Load())
	require.Equal(t, uint64(conns*msgs), ts.Stats().MessagesIn)
	for _, c := range clients {
		c.CloseNow()
	}
}

// Handlers of different connections run at the same time: each of two handlers waits until
// the other has started. The handler queue runs on a Global root, whose width is GOMAXPROCS
// (the queue package's rule: the smallest width along the chain), so the test gives the
// process two Ps: under `go test -cpu 1` two handlers could not run at once however wide
// HandlerWidth is, and the first one would wait for the second forever.
func TestParallelismAcrossConnections(t *testing.T) {
	twoPs(t)
	arrived := make(chan uint64, 2)
	release := make(chan struct{})
	h := HandlerFuncs{Message: func(c *Conn, m Message) {
		arrived <- c.ID()
		<-release
		_ = c.SendText("ok")
	}}
	ts := start(t, h, Options{HandlerWidth: 2})
	a, b := dial(t, ts.url), dial(t, ts.url)
	defer a.CloseNow()
	defer b.CloseNow()
	write(t, a, "x")
	write(t, b, "x")
	first := testutil.Recv(t, arrived, "first handler")
	second := testutil.Recv(t, arrived, "second handler, running while the first still is")
	require.NotEqual(t, first, second)
	close(release)
	_, s := read(t, a)
	require.Equal(t, "ok", s)
	_, s = read(t, b)
	require.Equal(t, "ok", s)
}

func TestCallbacksInOrderOnTheConnectionsQueue(t *testing.T) {
	events := make(chan string, 16)
	h := HandlerFuncs{
		Open: func(c *Conn) {
			require.True(t, c.Queue().IsCurrent())
			events <- "open"
		},
		Message: func(c *Conn, m Message) {
			require.True(t, c.Queue().IsCurrent())
			events <- "msg " + string(m.Data)
		},
		Close: func(c *Conn, err error) {
			require.True(t, c.Queue().IsCurrent())
			require.NoError(t, err)
			select {
			case <-c.Context().Done():
			default:
				t.Error("Context not done in OnClose")
			}
			events <- "close"
		},
	}
	ts := start(t, h, Options{})
	c := dial(t, ts.url)
	write(t, c, "1")
	write(t, c, "2")
	require.NoError(t, c.Close(websocket.StatusNormalClosure, "bye"))
	for _, want := range []string{"open", "msg 1", "msg 2", "close"} {
		require.Equal(t, want, testutil.Recv(t, events, want))
	}
}

func TestRequestData(t *testing.T) {
	got := make(chan *Conn, 1)
	ts := start(t, HandlerFuncs{Open: func(c *Conn) { got <- c }}, Options{
		Subprotocols: []string{"chat.v1"},
		Authenticate: func(r *http.Request) (any, error) { return "user-" + r.URL.Query().Get("u"), nil },
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.url+"/room?u=ann", &websocket.DialOptions{
		Subprotocols: []string{"chat.v1"},
		HTTPHeader:   http.Header{"X-Trace": []string{"abc"}},
	})
	require.NoError(t, err)
	defer c.CloseNow()
	sc := testutil.Recv(t, got, "OnOpen")
	require.Equal(t, "user-ann", sc.Auth())
	require.Equal(t, "chat.v1", sc.Subprotocol())
	require.Equal(t, "abc", sc.Header().Get("X-Trace"))
	require.Equal(t, "/room", sc.URL().Path)
	require.NotEmpty(t, sc.RemoteAddr())
	require.NotZero(t, sc.ID())
	require.Contains(t, sc.String(), "ws conn")
}

func TestSendAfterCloseFails(t *testing.T) {
	conns := make(chan *Conn, 1)
	closed := make(chan struct{})
	ts := start(t, HandlerFuncs{
		Open:  func(c *Conn) { conns <- c },
		Close: func(c *Conn, err error) { close(closed) },
	}, Options{})
	c := dial(t, ts.url)
	sc := testutil.Recv(t, conns, "OnOpen")
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	testutil.Recv(t, closed, "OnClose")
	require.ErrorIs(t, sc.SendText("late"), ErrClosed)
	require.ErrorIs(t, sc.Close(websocket.StatusNormalClosure, ""), ErrClosed)
	require.Equal(t, uint64(1), ts.Stats().Dropped)
	_ = fmt.Sprint(sc)
}

func TestCompression(t *testing.T) {
	ts := start(t, echo(), Options{CompressionMode: websocket.CompressionContextTakeover})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover})
	require.NoError(t, err)
	defer c.CloseNow()
	require.Contains(t, resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	big := strings.Repeat("compressible ", 1000)
	for range 3 {
		write(t, c, big)
		_, s := read(t, c)
		require.Equal(t, big, s)
	}
}

func TestSendJSON(t *testing.T) {
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		_ = c.SendJSON(map[string]any{"echo": string(m.Data), "id": 1})
		require.Error(t, c.SendJSON(func() {}))
	}}, Options{})
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "x")
	typ, s := read(t, c)
	require.Equal(t, websocket.MessageText, typ)
	require.JSONEq(t, `{"echo":"x","id":1}`, s)
}

// A received Message.Data belongs to the handler: it may keep it past OnMessage (and Send
// it), and later messages never write over it, though they are read through pooled
// buffers. Runs under the test's transport (both, in CI).
func TestReceivedDataBelongsToHandler(t *testing.T) {
	const n = 200
	kept := make(chan []byte, n)
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { kept <- m.Data }}, Options{})
	c := dial(t, ts.url)
	defer c.CloseNow()
	want := make([]string, n)
	for i := range n {
		want[i] = strings.Repeat(string(rune('a'+i%26)), 1+i*37%3000)
		write(t, c, want[i])
	}
	for i := range n {
		require.Equal(t, want[i], string(testutil.Recv(t, kept, "OnMessage")))
	}
}

// An idle connection keeps only the request headers it may be asked for: by default all
// but the handshake's own; with RequestHeaders, only those listed. The URL is kept as the
// request's URI and parsed on demand, query included.
func TestRequestHeadersKept(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keep  []string
		trace bool
	}{
		{"default", nil, true},
		{"listed", []string{"x-other"}, false},
		{"listed twice", []string{"x-other", "X-OTHER"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan *Conn, 1)
			ts := start(t, HandlerFuncs{Open: func(c *Conn) { got <- c }}, Options{RequestHeaders: tc.keep})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c, _, err := websocket.Dial(ctx, ts.url+"/room?u=ann", &websocket.DialOptions{
				HTTPHeader: http.Header{"X-Trace": {"abc"}, "X-Other": {"1", "2"}},
			})
			require.NoError(t, err)
			defer c.CloseNow()
			sc := testutil.Recv(t, got, "OnOpen")
			require.Equal(t, tc.trace, sc.Header().Get("X-Trace") == "abc")
			require.Equal(t, []string{"1", "2"}, sc.Header().Values("X-Other"))
			require.Empty(t, sc.Header().Get("Sec-WebSocket-Key"))
			require.Empty(t, sc.Header().Get("Upgrade"))
			require.Equal(t, "/room", sc.URL().Path)
			require.Equal(t, "ann", sc.URL().Query().Get("u"))
		})
	}
	t.Run("none", func(t *testing.T) {
		got := make(chan *Conn, 1)
		ts := start(t, HandlerFuncs{Open: func(c *Conn) { got <- c }}, Options{RequestHeaders: []string{}})
		c := dial(t, ts.url)
		defer c.CloseNow()
		sc := testutil.Recv(t, got, "OnOpen")
		require.Nil(t, sc.Header())
		require.Empty(t, sc.req.header())
		require.Equal(t, "/", sc.URL().String()) // kept without an allocation of its own
	})
}

// A connection does not keep the client's address (the socket has it): RemoteAddr formats
// the socket's, and keeps the request's only when a middleware rewrote it.
func TestRemoteAddrIsTheRequests(t *testing.T) {
	got := make(chan *Conn, 1)
	ts := start(t, HandlerFuncs{Open: func(c *Conn) { got <- c }}, Options{})
	c, tcp := dialTCP(t, ts.url)
	defer c.CloseNow()
	sc := testutil.Recv(t, got, "OnOpen")
	require.Equal(t, tcp.LocalAddr().String(), sc.RemoteAddr())
	require.Nil(t, sc.more.Load(), "the socket's address needs nothing kept")

	proxied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = "203.0.113.7:4242" // what a proxy-aware middleware would set
		ts.Server.ServeHTTP(w, r)
	}))
	t.Cleanup(proxied.Close)
	pc := dial(t, "ws"+strings.TrimPrefix(proxied.URL, "http"))
	defer pc.CloseNow()
	sc = testutil.Recv(t, got, "OnOpen")
	require.Equal(t, "203.0.113.7:4242", sc.RemoteAddr())
	require.Contains(t, sc.String(), "203.0.113.7:4242")
}

// twoPs gives the process at least two Ps for the test: a test in which one handler blocks
// while another connection's handler must run needs two slots of the handler queue, whose
// parallelism GOMAXPROCS bounds (see Options.HandlerWidth).
func twoPs(t *testing.T) {
	if n := runtime.GOMAXPROCS(0); n < 2 {
		runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(n) })
	}
}
