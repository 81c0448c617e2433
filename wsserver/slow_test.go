package wsserver

import (
	"context"
	"net"
	"net/http"
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

// A client that never reads does not slow a broadcast to 1,000 others, and is closed by the
// CloseSlow policy with 1008.
func TestSlowConsumerDoesNotSlowBroadcast(t *testing.T) {
	const others, broadcasts, size = 1000, 40, 2048
	opened := make(chan *Conn, others+1)
	cl := newCloses()
	var ts *testServer
	ts = start(t, HandlerFuncs{
		Open: func(c *Conn) {
			if c.Header().Get("X-Slow") != "" {
				// Small kernel buffers, so that the outbound buffer fills after a few messages.
				_ = c.sock().(*net.TCPConn).SetWriteBuffer(4096)
			}
			ts.Room("all").Join(c)
			opened <- c
		},
		Close: func(c *Conn, err error) {
			if c.Header().Get("X-Slow") != "" {
				cl.record(c, err)
			}
		},
	}, Options{SendBuffer: 4, WriteTimeout: time.Minute}) // a full buffer, not a write timeout, must end it

	// The slow client: tiny receive buffer, never reads.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = nc.(*net.TCPConn).SetReadBuffer(2048)
		}
		return nc, err
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	slow, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr}, HTTPHeader: http.Header{"X-Slow": {"1"}},
	})
	require.NoError(t, err)
	defer slow.CloseNow()

	clients := make([]*websocket.Conn, others)
	for i := range clients {
		clients[i] = dial(t, ts.url)
	}
	for range others + 1 {
		testutil.Recv(t, opened, "OnOpen")
	}
	require.Equal(t, others+1, ts.Room("all").Len())

	// Each reader reports every message; the next broadcast waits for all of them, so the
	// others never fall behind while the slow one piles up.
	var wg sync.WaitGroup
	var bad atomic.Int64
	got := make(chan struct{}, others)
	for _, c := range clients {
		wg.Go(func() {
			defer c.CloseNow()
			ctx, cancel := context.WithTimeout(context.Background(), 6*wait)
			defer cancel()
			for i := range broadcasts {
				_, b, err := c.Read(ctx)
				if err != nil || !strings.HasPrefix(string(b), strconv.Itoa(i)+":") || len(b) != size {
					if bad.Add(1) == 1 {
						t.Logf("message %d: %v", i, err)
					}
					return
				}
				got <- struct{}{}
			}
		})
	}
	room := ts.Room("all")
	for i := range broadcasts {
		msg := []byte(strconv.Itoa(i) + ":" + strings.Repeat("x", size))[:size]
		room.Broadcast(Binary(msg))
		for range others {
			testutil.Recv(t, got, "broadcast "+strconv.Itoa(i)+" at every other client")
		}
	}
	wg.Wait()
	require.Zero(t, bad.Load(), "a client missed broadcasts")

	err = testutil.Recv(t, cl.errs, "the slow consumer's OnClose")
	require.ErrorIs(t, err, ErrSlowConsumer)
	require.Equal(t, websocket.StatusPolicyViolation, websocket.CloseStatus(err))
	st := ts.Stats()
	require.Equal(t, uint64(1), st.SlowConsumerCloses)
	require.NotZero(t, st.Dropped)
}

func TestSlowPolicies(t *testing.T) {
	t.Run("drop newest", func(t *testing.T) {
		s := New(HandlerFuncs{}, Options{SendBuffer: 2, SlowConsumer: DropNewest})
		c := fakeConn(s, 1)
		require.NoError(t, c.SendText("a"))
		require.NoError(t, c.SendText("b"))
		require.ErrorIs(t, c.SendText("c"), ErrSlowConsumer)
		require.Equal(t, stateOpen, c.state.Load(), "the connection stays")
		require.Len(t, c.out, 2)
		require.Equal(t, uint64(1), s.Stats().Dropped)
	})
	t.Run("close slow", func(t *testing.T) {
		s := New(HandlerFuncs{}, Options{SendBuffer: 2})
		c := fakeConn(s, 1)
		require.NoError(t, c.SendText("a"))
		require.NoError(t, c.SendText("b"))
		require.ErrorIs(t, c.SendText("c"), ErrSlowConsumer)
		require.Equal(t, stateClosing, c.state.Load())
		require.Empty(t, c.out, "what was queued is dropped too")
		require.Equal(t, websocket.StatusPolicyViolation, c.closeReq.code)
		require.ErrorIs(t, c.SendText("d"), ErrClosed)
		require.Equal(t, uint64(4), s.Stats().Dropped)
		require.Equal(t, uint64(1), s.Stats().SlowConsumerCloses)
	})
	t.Run("byte limit", func(t *testing.T) {
		s := New(HandlerFuncs{}, Options{SendBufferBytes: 10, SlowConsumer: DropNewest})
		c := fakeConn(s, 1)
		require.NoError(t, c.Send(Binary(make([]byte, 64))), "one message always fits")
		require.ErrorIs(t, c.Send(Binary(make([]byte, 1))), ErrSlowConsumer)
	})
}

// When the handler falls MaxPending messages behind, the reader stops reading.
func TestBackpressurePausesReading(t *testing.T) {
	release := make(chan struct{})
	handled := make(chan struct{}, 100)
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		<-release
		handled <- struct{}{}
	}}, Options{MaxPending: 4})
	c := dial(t, ts.url)
	defer c.CloseNow()
	for i := range 100 {
		write(t, c, strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return ts.Stats().Pending == 4 }, wait, 1e6)
	// The reader waits for room: it has read exactly those 4.
	require.Equal(t, uint64(4), ts.Stats().MessagesIn)
	close(release)
	for range 100 {
		testutil.Recv(t, handled, "every message handled once the handler caught up")
	}
	require.Equal(t, uint64(100), ts.Stats().MessagesIn)
}

// Shutdown with messages still queued delivers them before the 1001 close frame.
func TestShutdownFlushesQueuedMessages(t *testing.T) {
	const n = 200
	cl := newCloses()
	var ts *testServer
	shutdown := make(chan error, 1)
	ts = start(t, HandlerFuncs{
		Message: func(c *Conn, m Message) {
			for i := range n {
				require.NoError(t, c.SendText(strconv.Itoa(i)))
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				shutdown <- ts.Shutdown(ctx)
			}()
		},
		Close: cl.record,
	}, Options{})
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "go")
	for i := range n {
		_, s := read(t, c)
		require.Equal(t, strconv.Itoa(i), s)
	}
	require.Equal(t, websocket.StatusGoingAway, readUntilClosed(t, c))
	require.NoError(t, testutil.Recv(t, shutdown, "Shutdown"))
	require.ErrorIs(t, testutil.Recv(t, cl.errs, "OnClose"), ErrShutdown)
}
