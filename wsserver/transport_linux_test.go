package wsserver

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// readiness is the Options of the tests that are about the readiness transport: they set it
// explicitly, so they run in both passes of CI (WSSERVER_TRANSPORT changes only the default).
func readiness(o Options) Options {
	o.Transport = TransportReadiness
	return o
}

// rawRequest is an upgrade request for a hand-made client.
func rawRequest(addr string) string {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	return "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n\r\n"
}

// readFrame reads one unmasked server frame of at most 125 bytes.
func readFrame(t *testing.T, r io.Reader) (byte, string) {
	t.Helper()
	var h [2]byte
	_, err := io.ReadFull(r, h[:])
	require.NoError(t, err)
	require.Less(t, int(h[1]), 126)
	p := make([]byte, h[1])
	_, err = io.ReadFull(r, p)
	require.NoError(t, err)
	return h[0], string(p)
}

// Under the readiness transport an idle connection holds no goroutine: with 2,000 idle
// connections open, and every one of them pinged by keepalive and not yet answering, the
// process has a constant number of goroutines more than with none (the pollers, the
// keepalive timer), not 2,000. (Under the goroutine transport this fails: 2,000 readers;
// and it failed with a goroutine per ping waiting for its pong.)
func TestReadinessIdleConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 2000
	var opened atomic.Int64
	ts := start(t, HandlerFuncs{Open: func(*Conn) { opened.Add(1) }},
		readiness(Options{PingInterval: 20 * time.Millisecond, PongTimeout: time.Hour}))
	addr := strings.TrimPrefix(ts.url, "ws://")
	base := runtime.NumGoroutine()
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range n {
		c, err := rawUpgrade(addr)
		require.NoError(t, err)
		clients = append(clients, c)
	}
	require.Eventually(t, func() bool { return opened.Load() == n }, wait, time.Millisecond)
	// Every connection gets its ping; none answers yet.
	for _, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		op, _ := readFrame(t, c)
		require.Equal(t, byte(0x89), op, "a ping")
	}
	// net/http's connection goroutines end once ServeHTTP has returned.
	extra := 4 + runtime.GOMAXPROCS(0) // the pollers, the keepalive timer, a straggler
	now := runtime.NumGoroutine()
	for deadline := time.Now().Add(wait); now-base > extra && time.Now().Before(deadline); now = runtime.NumGoroutine() {
		time.Sleep(time.Millisecond)
	}
	require.LessOrEqual(t, now-base, extra, "goroutines: %d before, %d with %d idle connections", base, now, n)
	require.Equal(t, n, ts.Stats().Connections)
	require.Equal(t, n, registered())

	// They still work: each takes the pong and answers a ping, read by a reader the
	// poller starts.
	for _, c := range clients[:20] {
		_, err := c.Write(append(clientFrame(true, 10, nil), clientFrame(true, 9, []byte("hi"))...))
		require.NoError(t, err)
		op, p := readFrame(t, c)
		require.Equal(t, byte(0x8a), op, "a pong")
		require.Equal(t, "hi", p)
	}
}

// Bytes that come in the same packet as the upgrade request are read at once: epoll does
// not report them (they are already off the socket), so the reader runs once after Accept.
func TestReadinessEarlyBytes(t *testing.T) {
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }}, readiness(Options{}))
	addr := strings.TrimPrefix(ts.url, "ws://")
	nc, err := net.DialTimeout("tcp", addr, wait)
	require.NoError(t, err)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(wait))
	msg := append([]byte(rawRequest(addr)), clientFrame(true, 1, []byte("early"))...)
	msg = append(msg, clientFrame(true, 1, []byte("bird"))...)
	_, err = nc.Write(msg)
	require.NoError(t, err)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	for _, want := range []string{"early", "bird"} {
		op, p := readFrame(t, br)
		require.Equal(t, byte(0x81), op)
		require.Equal(t, want, p)
	}
}

// Slowloris: a frame trickled a byte at a time blocks neither the (single) handler worker
// nor another connection; its reader waits alone, and the message arrives whole.
func TestReadinessSlowlorisBlocksNobody(t *testing.T) {
	trickleBesideAnother(t, readiness(Options{HandlerWidth: 1}), false)
}

// trickleBesideAnother starts an echo server with opts, trickles a frame to it a byte at a
// time on one connection and, between two bytes, has another connection's message echoed
// (after a first one that warms it up, if warm): the other connection is served while the
// slow frame's reader waits, and the slow message arrives whole.
func trickleBesideAnother(t *testing.T, opts Options, warmUp bool) {
	t.Helper()
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }}, opts)
	slow, err := rawUpgrade(strings.TrimPrefix(ts.url, "ws://"))
	require.NoError(t, err)
	defer slow.Close()
	other := dial(t, ts.url)
	defer other.CloseNow()
	if warmUp {
		warm(t, other)
	}
	frame := clientFrame(true, 1, []byte("patience"))
	for i, b := range frame[:len(frame)-1] {
		_, err := slow.Write([]byte{b})
		require.NoError(t, err)
		write(t, other, "ping "+string(rune('a'+i)))
		_, got := read(t, other)
		require.Equal(t, "ping "+string(rune('a'+i)), got)
	}
	_, err = slow.Write(frame[len(frame)-1:])
	require.NoError(t, err)
	_ = slow.SetDeadline(time.Now().Add(wait))
	op, p := readFrame(t, slow)
	require.Equal(t, byte(0x81), op)
	require.Equal(t, "patience", p)
}

// A sender that stops in the middle of a frame is cut after PongTimeout (pings are off
// here, so nothing else would end it); the stream is never resynchronised by guesswork.
func TestReadinessStalledFrameIsCut(t *testing.T) {
	cl := newCloses()
	ts := start(t, HandlerFuncs{Close: cl.record}, readiness(Options{PingInterval: -1, PongTimeout: 50 * time.Millisecond}))
	slow, err := rawUpgrade(strings.TrimPrefix(ts.url, "ws://"))
	require.NoError(t, err)
	defer slow.Close()
	frame := clientFrame(true, 1, []byte("never finished"))
	_, err = slow.Write(frame[:5])
	require.NoError(t, err)
	err = testutil.Recv(t, cl.errs, "OnClose of the stalled connection")
	require.Equal(t, websocket.StatusAbnormalClosure, websocket.CloseStatus(err))
	require.ErrorIs(t, err, ErrConnectionLost)
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// 10,000 connect/disconnect cycles under the readiness transport leave no goroutine, no
// file descriptor and no epoll registration behind; the pollers themselves are gone once
// the last connection is.
func TestReadinessChurnLeavesNoFDOrRegistration(t *testing.T) {
	const total, workers = 10_000, 16
	var closed atomic.Int64
	ts := start(t, HandlerFuncs{
		Message: func(c *Conn, m Message) { _ = c.Send(m) },
		Close:   func(*Conn, error) { closed.Add(1) },
	}, readiness(Options{}))
	addr := strings.TrimPrefix(ts.url, "ws://")
	ignore := goleak.IgnoreCurrent()
	fds := openFDs(t)

	var next, failures atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= total; i = next.Add(1) {
				if err := churnOnce(addr, i); err != nil && failures.Add(1) == 1 {
					t.Logf("churn: %v", err)
				}
			}
		})
	}
	wg.Wait()
	require.Zero(t, failures.Load())
	require.Eventually(t, func() bool { return closed.Load() == total }, wait, time.Millisecond)
	require.Zero(t, registered(), "epoll registrations left")
	goleak.VerifyNone(t, ignore)
	require.Equal(t, fds, openFDs(t), "file descriptors left")
}

// churnOnce opens a raw connection; some say something first, some close politely, some
// just drop the socket.
func churnOnce(addr string, i int64) error {
	c, err := rawUpgrade(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	switch i % 3 {
	case 0:
		if _, err := c.Write(clientFrame(true, 1, []byte("hi"))); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			return err
		}
		fallthrough
	case 1:
		if _, err := c.Write(clientFrame(true, 8, []byte{3, 232})); err != nil {
			return err
		}
		_, err := io.Copy(io.Discard, c) // the server's close frame, then EOF
		return err
	}
	return nil
}

// A pinging server reaches an idle readiness connection: the pong is read by a reader
// the poller starts (with coder/websocket's Conn made again: the idle connection had
// dropped it), and the connection stays up. The ping is the keepalive sweep's.
func TestReadinessPingReachesIdleConnection(t *testing.T) {
	armed := make(chan struct{}, 64)
	opened := make(chan *Conn, 1)
	ts := start(t, HandlerFuncs{Open: func(c *Conn) { opened <- c }}, readiness(Options{}))
	setPollHook(t, func(_ *pollConn, step pollStep) { // the test's one connection
		if step == stepArmed {
			signal(armed)
		}
	})
	c := dial(t, ts.url)
	defer c.CloseNow()
	ctx := c.CloseRead(context.Background()) // the client answers pings while it reads
	sc := testutil.Recv(t, opened, "OnOpen")
	testutil.Recv(t, armed, "the connection let go after the upgrade")
	const never = 1 << 30 // an epoch the server does not reach: the pong stores the current one
	sc.seen.Store(never)
	require.Equal(t, ctlSent, sc.bw.tryControl(&pingFrame))
	for sc.seen.Load() == never {
		testutil.Recv(t, armed, "the connection let go after reading the pong")
	}
	require.NoError(t, ctx.Err())
}

// Two servers in one process share the pollers, and each numbers its connections from 1:
// the pollers tell their connections apart all the same.
func TestReadinessTwoServersShareThePollers(t *testing.T) {
	echo := HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }}
	a, b := start(t, echo, readiness(Options{})), start(t, echo, readiness(Options{}))
	ca, cb := dial(t, a.url), dial(t, b.url)
	defer ca.CloseNow()
	defer cb.CloseNow()
	for i := range 5 {
		for _, c := range []*websocket.Conn{ca, cb} {
			write(t, c, "hello "+string(rune('0'+i)))
			_, got := read(t, c)
			require.Equal(t, "hello "+string(rune('0'+i)), got)
		}
	}
}

// Over TLS the readiness transport does not apply (crypto/tls holds decrypted bytes that
// epoll cannot see): the connection gets a reader goroutine, and works.
func TestReadinessTLSKeepsAReaderGoroutine(t *testing.T) {
	conns := make(chan *Conn, 1)
	s := New(HandlerFuncs{Open: func(c *Conn) { conns <- c }, Message: func(c *Conn, m Message) { _ = c.Send(m) }},
		readiness(Options{}))
	hs := httptest.NewTLSServer(s)
	defer hs.Close()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(hs.URL, "https"), &websocket.DialOptions{HTTPClient: hs.Client()})
	require.NoError(t, err)
	defer c.CloseNow()
	sc := testutil.Recv(t, conns, "OnOpen")
	require.Nil(t, sc.pc, "a TLS connection is not polled")
	write(t, c, "secret")
	_, got := read(t, c)
	require.Equal(t, "secret", got)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
}

// setPollHook installs fn as testHookPoll for the test.
func setPollHook(t *testing.T, fn func(pc *pollConn, step pollStep)) {
	testHookPoll.Store(&fn)
	t.Cleanup(func() { testHookPoll.Store(nil) })
}

// signal sends on ch without waiting (ch is buffered; a full one has signalled enough).
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// The socket is registered edge-triggered: epoll reports bytes arriving, once. Bytes that
// arrive after the reader's last empty read but before it lets its goroutine go come with
// an edge the poller sees while the reader still runs; that edge must send the reader back
// to read, or the message waits until the peer sends another one. The test holds the
// reader between its empty read and its arming, sends a message then, and waits for the
// poller to see its edge. (It failed with the arming a plain store: "two" never came back.)
func TestReadinessEdgeWhileReadingIsNotLost(t *testing.T) {
	armed, edge := make(chan struct{}, 64), make(chan struct{}, 64)
	trapped, release := make(chan struct{}), make(chan struct{})
	var trap atomic.Bool
	ts := echoWatched(t, func(step pollStep) {
		switch step {
		case stepArmed:
			signal(armed)
		case stepEdge:
			signal(edge)
		case stepArming:
			if trap.CompareAndSwap(true, false) {
				close(trapped)
				select {
				case <-release:
				case <-time.After(wait):
				}
			}
		}
	})
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "zero")
	_, got := read(t, c)
	require.Equal(t, "zero", got)
	testutil.Recv(t, armed, "the socket registered with its poller")

	trap.Store(true)
	write(t, c, "one")
	testutil.Recv(t, trapped, "the reader between its empty read and its arming")
	write(t, c, "two")
	testutil.Recv(t, edge, "the poller seeing the bytes of two while the reader runs")
	close(release)
	_, got = read(t, c)
	require.Equal(t, "one", got)
	_, got = read(t, c)
	require.Equal(t, "two", got)
}

// More connections stalled mid-frame than the run list keeps runners parked (a slow sender
// holds its reader's runner) do not hold up a wake-up: a runner waiting for the rest of a
// frame stops counting as busy, and work with no busy runner gets another one. Each stalled
// connection is idle and armed first, so that its frame's first byte comes through the
// poller and the run list.
func TestReadinessStalledReadersBeyondThePoolBlockNobody(t *testing.T) {
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }},
		readiness(Options{PingInterval: -1}))
	addr := strings.TrimPrefix(ts.url, "ws://")
	armed, mid := make(chan *pollConn, 256), make(chan *pollConn, 256)
	setPollHook(t, func(pc *pollConn, step pollStep) {
		switch step {
		case stepArmed:
			select {
			case armed <- pc:
			default:
			}
		case stepMidFrame:
			select {
			case mid <- pc:
			default:
			}
		}
	})
	n := readersPerCore*runtime.GOMAXPROCS(0) + 2
	frame := clientFrame(true, 1, []byte("slow"))
	slow := make([]net.Conn, n)
	for i := range slow {
		nc, err := rawUpgrade(addr)
		require.NoError(t, err)
		defer nc.Close()
		slow[i] = nc
		testutil.Recv(t, armed, "the new connection armed")
		_, err = nc.Write(frame[:1])
		require.NoError(t, err)
		testutil.Recv(t, mid, "its reader waiting for the rest of the frame")
	}
	other := dial(t, ts.url)
	defer other.CloseNow()
	for _, s := range []string{"a", "b"} {
		write(t, other, s)
		_, got := read(t, other)
		require.Equal(t, s, got)
	}
	for _, nc := range slow {
		_, err := nc.Write(frame[1:])
		require.NoError(t, err)
		_ = nc.SetDeadline(time.Now().Add(wait))
		op, p := readFrame(t, nc)
		require.Equal(t, byte(0x81), op)
		require.Equal(t, "slow", p)
	}
}

// A handler may wait for what only the reader can bring: here the connection's end, which
// the reader learns from the peer's close frame. Run inline on the reader's goroutine, it
// would wait for itself; the reader lets the connection go to its poller first, so another
// reader reads the close. (It hung with the handler run inline without letting go.) The
// message comes alone, so that the stream is quiet when it is handled.
func TestReadinessHandlerWaitingForTheEndHoldsNoReader(t *testing.T) {
	entered := make(chan struct{}, 1)
	cl := newCloses()
	ts := start(t, HandlerFuncs{
		Message: func(c *Conn, m Message) {
			entered <- struct{}{}
			select {
			case <-c.Context().Done():
			case <-time.After(wait):
				t.Error("the connection's end never came to the waiting handler")
			}
		},
		Close: cl.record,
	}, readiness(Options{PingInterval: -1}))
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "wait for the end")
	testutil.Recv(t, entered, "the handler")
	go func() { _ = c.Close(websocket.StatusNormalClosure, "") }()
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}

// Readers run on a few runner goroutines that take connections from a run list, at most
// maxBusy of them busy at once. A handler run inline may block for as long as it likes:
// its runner stops counting as busy first, so the connections whose bytes come meanwhile
// get another runner. Here the run list allows one busy runner, a handler blocks on it,
// and another connection is still served. (It hung with the inline handler counted busy.)
func TestReadinessBlockedHandlerHoldsNoRunner(t *testing.T) {
	twoPs(t) // the blocked handler holds one slot of the handler queue, the other connection needs another
	testPollMaxBusy.Store(1)
	t.Cleanup(func() { testPollMaxBusy.Store(0) })
	entered, release := make(chan struct{}, 1), make(chan struct{})
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		if string(m.Data) == "block" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-time.After(wait):
				t.Error("never released")
			}
		}
		_ = c.Send(m)
	}}, readiness(Options{PingInterval: -1}))
	other := dial(t, ts.url)
	defer other.CloseNow()
	write(t, other, "warm")
	_, got := read(t, other)
	require.Equal(t, "warm", got)
	blocked := dial(t, ts.url)
	defer blocked.CloseNow()
	write(t, blocked, "block")
	testutil.Recv(t, entered, "the handler blocking")
	for _, s := range []string{"a", "b"} {
		write(t, other, s)
		_, got := read(t, other)
		require.Equal(t, s, got)
	}
	close(release)
	_, got = read(t, blocked)
	require.Equal(t, "block", got)
}

// holdInline makes the first reader about to run a message inline wait, once it let the
// connection go, until another reader has handed something on (a message, the close); it
// reports when the first one is there.
func holdInline(t *testing.T) <-chan struct{} {
	inline, queued := make(chan struct{}, 1), make(chan struct{}, 1)
	var once sync.Once
	hookInline := func(*Conn) {
		once.Do(func() {
			inline <- struct{}{}
			testutil.Recv(t, queued, "another reader handing something on")
		})
	}
	hookQueued := func(*Conn) {
		select {
		case queued <- struct{}{}:
		default:
		}
	}
	testHookInline.Store(&hookInline)
	testHookQueued.Store(&hookQueued)
	t.Cleanup(func() { testHookInline.Store(nil); testHookQueued.Store(nil) })
	return inline
}

// A message read while the reader that read the one before is about to run it inline (it
// let the connection go, and has not entered the connection's queue yet) is handled after
// it: OnMessage sees the peer's order. (It was queued at once and ran first:
// TestReceivedDataBelongsToHandler failed about 1 run in 40 under -race.)
func TestReadinessInlineMessageKeepsItsPlace(t *testing.T) {
	inline := holdInline(t)
	got := make(chan string, 2)
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { got <- string(m.Data) }}, readiness(Options{PingInterval: -1}))
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "first")
	testutil.Recv(t, inline, "the first message about to run inline")
	write(t, c, "second")
	require.Equal(t, "first", testutil.Recv(t, got, "OnMessage"))
	require.Equal(t, "second", testutil.Recv(t, got, "OnMessage"))
}

// The same with the connection's end: OnClose comes after the message on its way to run
// inline, not before.
func TestReadinessInlineMessageComesBeforeOnClose(t *testing.T) {
	inline := holdInline(t)
	got := make(chan string, 2)
	ts := start(t, HandlerFuncs{
		Message: func(c *Conn, m Message) { got <- string(m.Data) },
		Close:   func(*Conn, error) { got <- "OnClose" },
	}, readiness(Options{PingInterval: -1}))
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "last")
	testutil.Recv(t, inline, "the message about to run inline")
	require.NoError(t, c.CloseNow())
	require.Equal(t, "last", testutil.Recv(t, got, "OnMessage"))
	require.Equal(t, "OnClose", testutil.Recv(t, got, "OnClose"))
}

// echoWatched starts an echo server on the readiness transport and calls watch at each
// pollStep of its one connection (the poll hook of the test).
func echoWatched(t *testing.T, watch func(step pollStep)) *testServer {
	t.Helper()
	var srv atomic.Pointer[Conn]
	ts := start(t, HandlerFuncs{
		Open:    func(c *Conn) { srv.Store(c) },
		Message: func(c *Conn, m Message) { _ = c.Send(m) },
	}, readiness(Options{PingInterval: -1}))
	setPollHook(t, func(pc *pollConn, step pollStep) {
		if c := srv.Load(); c != nil && pc.c == c {
			watch(step)
		}
	})
	return ts
}

// echoCountingReads is echoWatched signalling armed each time the connection is let go
// (armed with its poller) and counting in empty the reads that found the socket empty.
func echoCountingReads(t *testing.T) (ts *testServer, armed chan struct{}, empty *atomic.Int32) {
	t.Helper()
	armed = make(chan struct{}, 64)
	empty = new(atomic.Int32)
	ts = echoWatched(t, func(step pollStep) {
		switch step {
		case stepArmed:
			signal(armed)
		case stepEmpty:
			empty.Add(1)
		}
	})
	return ts, armed, empty
}

// A wake-up reads the socket once, mostly: when the read that brought the message came back
// short, the socket was empty after it, and the reader lets the connection go without a
// second read that would only say "would block" (bytes that come meanwhile come with an
// edge, TestReadinessEdgeWhileReadingIsNotLost), but for one time in confirmProbe, which
// finds out whether the peer streams. Each message here comes to an armed connection
// through the poller. (It failed before: one empty read per message.)
func TestReadinessWakeUpReadsOnce(t *testing.T) {
	ts, armed, empty := echoCountingReads(t)
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "zero")
	_, got := read(t, c)
	require.Equal(t, "zero", got)
	testutil.Recv(t, armed, "the socket registered with its poller")

	empty.Store(0)
	const n = 4 * confirmProbe
	for i := range n {
		m := strconv.Itoa(i)
		write(t, c, m)
		_, got = read(t, c)
		require.Equal(t, m, got)
		testutil.Recv(t, armed, "the connection let go after "+m)
	}
	require.LessOrEqual(t, int(empty.Load()), n/confirmProbe+1, "reads that found the socket empty")
}

// After a read that brought several messages at once (a peer that streams), the reader does
// read again before it lets the connection go: the peer has likely sent more meanwhile, and
// that read takes it without a trip through the poller. A read with one message is not
// followed by one (TestReadinessWakeUpReadsOnce).
func TestReadinessReadAfterSeveralMessages(t *testing.T) {
	ts, armed, empty := echoCountingReads(t)
	rc := rawDial(t, ts.url)
	rc.echoed("zero")
	testutil.Recv(t, armed, "the socket registered with its poller")

	empty.Store(0)
	// Two messages in one write: one segment, one read.
	rc.send(clientFrame(true, opText, []byte("a")), clientFrame(true, opText, []byte("b")))
	for _, want := range []string{"a", "b"} {
		op, p := rc.read()
		require.Equal(t, byte(opText), op)
		require.Equal(t, want, string(p))
	}
	testutil.Recv(t, armed, "the connection let go after a and b")
	require.Equal(t, int32(1), empty.Load(), "reads that found the socket empty after a and b")

	rc.echoed("c")
	testutil.Recv(t, armed, "the connection let go after c")
	require.Equal(t, int32(1), empty.Load(), "reads that found the socket empty after c")
}

// A FIN that comes right behind a message (a peer that sends its last message and closes)
// is read with it, by the read that came back short: no edge of its own follows, so the
// reader must not leave out its confirming read (which says end of stream) and let the
// connection go; epoll reported the FIN (RDHUP), and the reader reads. (Without the
// hang-up flag the connection stayed armed, its end unseen: OnClose never came.)
func TestReadinessFINBehindAMessageIsRead(t *testing.T) {
	for i := range 20 {
		closed := make(chan struct{})
		ts := start(t, HandlerFuncs{
			Message: func(c *Conn, m Message) { _ = c.Send(m) },
			Close:   func(*Conn, error) { close(closed) },
		}, readiness(Options{PingInterval: -1}))
		rc := rawDial(t, ts.url)
		rc.echoed("zero")
		rc.send(clientFrame(true, opText, []byte("last")))
		require.NoError(t, rc.nc.(*net.TCPConn).CloseWrite())
		testutil.Recv(t, closed, "OnClose after the FIN, round "+strconv.Itoa(i))
		_ = rc.nc.Close()
	}
}
