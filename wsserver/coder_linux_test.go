package wsserver

import (
	"bufio"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// lazyServer is an echo server on the readiness transport for the tests of coder.go: it
// hands over its connection at OnOpen, signals armed each time a connection is let go, and
// records OnClose's error.
type lazyServer struct {
	*testServer
	opened chan *Conn
	armed  chan struct{}
	closed chan error
}

func startLazy(t *testing.T, opts Options) *lazyServer {
	t.Helper()
	ls := &lazyServer{opened: make(chan *Conn, 1), armed: make(chan struct{}, 256), closed: make(chan error, 1)}
	ls.testServer = start(t, HandlerFuncs{
		Open:    func(c *Conn) { ls.opened <- c },
		Message: func(c *Conn, m Message) { _ = c.Send(m) },
		Close:   func(c *Conn, err error) { ls.closed <- err },
	}, readiness(opts))
	setPollHook(t, func(_ *pollConn, step pollStep) { // the test's one connection
		if step == stepArmed {
			signal(ls.armed)
		}
	})
	return ls
}

// idle waits for the connection to be let go (armed, no reader running) and checks that it
// then holds no coder Conn nor coder's bufio.Reader. It waits on the poll hook's signals:
// one that a reader sent before the one awaited is passed over while a reader runs.
func (ls *lazyServer) idle(t *testing.T, sc *Conn, what string) {
	t.Helper()
	ws, br := ls.armedState(t, sc, what)
	require.Nil(t, ws, "an idle connection holds coder/websocket's Conn "+what)
	require.Nil(t, br, "an idle connection holds coder's bufio.Reader "+what)
}

// kept is idle for an episode that read a data message through coder's Conn: it keeps it.
func (ls *lazyServer) kept(t *testing.T, sc *Conn, what string) {
	t.Helper()
	ws, br := ls.armedState(t, sc, what)
	require.NotNil(t, ws, "the connection dropped coder's Conn right after a message that needed it "+what)
	require.NotNil(t, br)
}

// armedState waits for the connection to be let go and returns its coder Conn and reader.
func (ls *lazyServer) armedState(t *testing.T, sc *Conn, what string) (*websocket.Conn, *bufio.Reader) {
	t.Helper()
	for {
		testutil.Recv(t, ls.armed, "the connection let go "+what)
		sc.mu.Lock() // the coder Conn and its reader are dropped and made under it
		armed := sc.pc.state.Load() == readerArmed
		ws, br := sc.ws.Load(), sc.pc.br
		sc.mu.Unlock()
		if armed {
			return ws, br
		}
	}
}

// After the upgrade an idle connection holds no coder/websocket Conn, and whole small
// messages, which the reader takes itself, do not make one again. (It failed before
// coder.go: the Conn was kept for the connection's life.)
func TestReadinessIdleConnectionHoldsNoCoderConn(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	for i := range 5 {
		m := strconv.Itoa(i)
		rc.send(frameBytes(finBit|opText, []byte(m)))
		op, p := rc.read()
		require.Equal(t, byte(opText), op)
		require.Equal(t, m, string(p))
		ls.idle(t, sc, "after message "+m)
	}
	require.Equal(t, "", sc.Subprotocol())
}

// What coder/websocket reads (pings, pongs, fragmented messages, a message larger than the
// reader's buffer) still works on a connection that dropped its Conn: it is made again,
// kept while data messages need it, and dropped again at the end of the first reader
// episode that reads no data message through it, many times over.
func TestReadinessCoderConnMadeAgainForControlFrames(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1, ReadLimit: 64 << 10})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	big := strings.Repeat("x", 3*pollBufSize)
	ping := func(n string) {
		t.Helper()
		op, p := rc.read()
		require.Equal(t, byte(opPong), op)
		require.Equal(t, "p"+n, string(p))
		ls.idle(t, sc, "after ping "+n)
	}
	for i := range 20 {
		n := strconv.Itoa(i)
		rc.send(frameBytes(finBit|opPing, []byte("p"+n)))
		ping(n)

		rc.send(frameBytes(opText, []byte("frag")), frameBytes(finBit|opCont, []byte("ment"+n)))
		op, p := rc.read()
		require.Equal(t, byte(opText), op)
		require.Equal(t, "fragment"+n, string(p))
		ls.kept(t, sc, "after a fragmented message "+n)

		rc.send(frameBytes(finBit|opPong, []byte("unasked")), frameBytes(finBit|opPing, []byte("p"+n)))
		ping(n)

		rc.send(frameBytes(finBit|opBinary, []byte(big+n)))
		op, p = rc.read()
		require.Equal(t, byte(opBinary), op)
		require.Equal(t, big+n, string(p))
		ls.kept(t, sc, "after a large message "+n)

		rc.send(frameBytes(finBit|opText, []byte("small"+n)))
		op, p = rc.read()
		require.Equal(t, byte(opText), op)
		require.Equal(t, "small"+n, string(p))
		ls.idle(t, sc, "after a small message "+n)
	}
	rc.send(frameBytes(finBit|opCloseF, closePayload(1000, "")))
	code, _ := rc.expectClose()
	require.Equal(t, 1000, code)
	require.NoError(t, testutil.Recv(t, ls.closed, "OnClose"))
}

// The read limit set at the upgrade holds for a Conn made again: a message over it is
// refused with 1009.
func TestReadinessCoderConnMadeAgainKeepsTheReadLimit(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1, ReadLimit: 100})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	rc.send(frameBytes(finBit|opPing, nil))
	op, _ := rc.read()
	require.Equal(t, byte(opPong), op)
	ls.idle(t, sc, "after a ping")
	// Fragmented, so that coder/websocket reads it (the reader takes only single frames).
	rc.send(frameBytes(opText, []byte(strings.Repeat("a", 60))), frameBytes(finBit|opCont, []byte(strings.Repeat("b", 60))))
	code, _ := rc.expectClose()
	require.Equal(t, int(websocket.StatusMessageTooBig), code)
	rc.send(frameBytes(finBit|opCloseF, closePayload(1000, "")))
	err := testutil.Recv(t, ls.closed, "OnClose")
	require.ErrorIs(t, err, ErrMessageTooBig)
}

// A close handshake started by the peer while the connection holds no coder Conn.
func TestReadinessPeerClosesWhileCoderConnDropped(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	rc.send(frameBytes(finBit|opCloseF, closePayload(4000, "bye")))
	code, reason := rc.expectClose()
	require.Equal(t, 4000, code)
	require.Equal(t, "bye", reason)
	rc.expectEOF()
	var ce websocket.CloseError
	require.ErrorAs(t, testutil.Recv(t, ls.closed, "OnClose"), &ce)
	require.Equal(t, websocket.StatusCode(4000), ce.Code)
}

// A close handshake started by the server while the connection holds no coder Conn: the
// close path makes it again.
func TestReadinessServerClosesWhileCoderConnDropped(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	require.NoError(t, sc.Close(websocket.StatusNormalClosure, "done"))
	op, p := rc.read()
	require.Equal(t, byte(opCloseF), op)
	require.Equal(t, closePayload(1000, "done"), p)
	rc.send(frameBytes(finBit|opCloseF, closePayload(1000, "")))
	rc.expectEOF()
	require.NoError(t, testutil.Recv(t, ls.closed, "OnClose"))
}

// The server closes while the peer does not answer: the close handshake, on a Conn made
// again, gives up after its grace, and the connection ends.
func TestReadinessServerClosesSilentPeerWhileCoderConnDropped(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	require.NoError(t, sc.Close(websocket.StatusGoingAway, ""))
	op, _ := rc.read()
	require.Equal(t, byte(opCloseF), op)
	err := testutil.Recv(t, ls.closed, "OnClose")
	var ce *CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.StatusGoingAway, ce.Code)
}

// A peer that vanishes (no close frame) while the connection holds no coder Conn: the
// connection ends as lost, without making a Conn only to read the end of the stream.
func TestReadinessPeerVanishesWhileCoderConnDropped(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	require.NoError(t, rc.nc.Close())
	err := testutil.Recv(t, ls.closed, "OnClose")
	require.ErrorIs(t, err, ErrConnectionLost)
	require.Nil(t, sc.ws.Load(), "a coder Conn was made for the end of the stream")
	require.True(t, sc.flag(flagCoderGone))
}

// Keepalive pings reach a connection that dropped its coder Conn, its pongs are read (the
// peer stays up through many intervals), and a peer that stops answering is cut.
func TestReadinessKeepaliveWhileCoderConnDropped(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: pingTestInterval, PongTimeout: pingTestInterval})
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	for i := range 5 {
		op, p := rc.read()
		require.Equal(t, byte(opPing), op, "ping %d", i)
		rc.send(frameBytes(finBit|opPong, p))
	}
	// Not answering now: the sweep cuts the connection.
	for {
		op, _, err := rc.next()
		if err != nil {
			break
		}
		require.Equal(t, byte(opPing), op)
	}
	err := testutil.Recv(t, ls.closed, "OnClose")
	require.ErrorIs(t, err, ErrPingTimeout)
}

// pingTestInterval is the keepalive interval of TestReadinessKeepaliveWhileCoderConnDropped.
const pingTestInterval = 40 * time.Millisecond

// The subprotocol is told without coder's Conn; a subprotocol coder negotiated in the
// client's spelling, which the options do not have, keeps the Conn.
func TestReadinessSubprotocolWhileCoderConnDropped(t *testing.T) {
	for _, offer := range []string{"chat.v2", "CHAT.V2"} {
		t.Run(offer, func(t *testing.T) {
			ls := startLazy(t, Options{PingInterval: -1, Subprotocols: []string{"echo", "chat.v2"}})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, ls.url, &websocket.DialOptions{Subprotocols: []string{offer}})
			require.NoError(t, err)
			defer c.CloseNow()
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			require.Equal(t, offer, c.Subprotocol())
			sc := testutil.Recv(t, ls.opened, "OnOpen")
			if offer != "chat.v2" {
				testutil.Recv(t, ls.armed, "the connection let go after the upgrade")
				require.Equal(t, offer, sc.Subprotocol())
				require.NotNil(t, sc.ws.Load(), "the client's spelling is coder's only")
			} else {
				ls.idle(t, sc, "after the upgrade")
				require.Equal(t, offer, sc.Subprotocol())
				pctx, pcancel := context.WithTimeout(context.Background(), wait)
				defer pcancel()
				go func() { _, _, _ = c.Read(pctx) }() // the client answers pings while it reads
				require.Equal(t, ctlSent, sc.bw.tryControl(&pingFrame))
				ls.idle(t, sc, "after the pong")
				require.Equal(t, offer, sc.Subprotocol())
			}
			require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
			require.NoError(t, testutil.Recv(t, ls.closed, "OnClose"))
			if offer == "chat.v2" {
				require.Equal(t, "chat.v2", sc.Subprotocol())
			}
		})
	}
}

// BenchmarkCoderRemake is what a connection that dropped its coder/websocket Conn pays to
// make it again and drop it once more (a reader episode that needs coder: a control frame,
// a fragmented or large message): Accept with the synthetic request, SetReadLimit, the
// finalizer set and cleared. Run it with -benchmem; CPU per op with perf stat (BENCHMARKS.md).
func BenchmarkCoderRemake(b *testing.B) {
	opened, armed := make(chan *Conn, 1), make(chan struct{}, 1)
	hook := func(_ *pollConn, step pollStep) {
		if step == stepArmed {
			signal(armed)
		}
	}
	testHookPoll.Store(&hook)
	defer testHookPoll.Store(nil)
	s := New(HandlerFuncs{Open: func(c *Conn) { opened <- c }}, Options{Transport: TransportReadiness, PingInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(s)
	defer hs.Close()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Shutdown(ctx)
	}()
	rc := rawDial(b, "ws"+strings.TrimPrefix(hs.URL, "http"))
	defer rc.nc.Close()
	sc := testutil.Recv(b, opened, "OnOpen")
	testutil.Recv(b, armed, "the connection let go after the upgrade")
	require.Nil(b, sc.ws.Load())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sc.mu.Lock()
		ws := sc.remakeLocked()
		sc.ws.Store(ws)
		sc.dropCoderLocked(ws)
		sc.mu.Unlock()
	}
}

// The close path and the reader may both need coder's Conn again at once: the server
// closes while the peer's ping (which the reader reads through coder) arrives. They must
// get the same Conn (made once, under Conn.mu), or two would read one stream. Over many
// connections the close handshake completes every time, with the peer's answer.
func TestReadinessCloseRacesRemakeForPing(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: -1})
	for i := range 100 {
		rc := rawDial(t, ls.url)
		sc := testutil.Recv(t, ls.opened, "OnOpen")
		ls.idle(t, sc, "after the upgrade "+strconv.Itoa(i))
		go func() { _ = sc.Close(websocket.StatusNormalClosure, "race") }()
		rc.send(frameBytes(finBit|opPing, []byte("p")))
		for {
			op, p := rc.read()
			if op == opPong {
				continue // read before the close, or not: either way before the close frame
			}
			require.Equal(t, byte(opCloseF), op, "connection %d", i)
			require.Equal(t, closePayload(1000, "race"), p)
			break
		}
		rc.send(frameBytes(finBit|opCloseF, closePayload(1000, "")))
		rc.expectEOF()
		require.NoError(t, testutil.Recv(t, ls.closed, "OnClose"))
		require.NoError(t, rc.nc.Close())
	}
}

// Pings and pongs between messages are taken past coder/websocket (frameGuard.takeControl):
// a connection that dropped its Conn answers the peer's pings, and reads keepalive's pongs,
// without making it again; a fragmented message does make it. (Before takeControl, each
// ping and pong made it again.)
func TestReadinessPingPongMakeNoCoderConn(t *testing.T) {
	ls := startLazy(t, Options{PingInterval: pingTestInterval, PongTimeout: wait})
	var remakes atomic.Int32
	hook := func(*Conn) { remakes.Add(1) }
	testHookRemake.Store(&hook)
	t.Cleanup(func() { testHookRemake.Store(nil) })
	rc := rawDial(t, ls.url)
	sc := testutil.Recv(t, ls.opened, "OnOpen")
	ls.idle(t, sc, "after the upgrade")
	// The peer's pings, answered (keepalive's, which may come meanwhile, answered too).
	for i := range 5 {
		rc.send(frameBytes(finBit|opPing, []byte("c"+strconv.Itoa(i))))
	}
	for pongs := 0; pongs < 5; {
		op, p := rc.read()
		if op == opPing {
			rc.send(frameBytes(finBit|opPong, p))
			continue
		}
		require.Equal(t, byte(opPong), op)
		require.Equal(t, "c"+strconv.Itoa(pongs), string(p))
		pongs++
	}
	// Keepalive's pings, answered: the connection stays up through several intervals.
	for range 3 {
		op, p := rc.read()
		require.Equal(t, byte(opPing), op)
		rc.send(frameBytes(finBit|opPong, p))
	}
	ls.idle(t, sc, "after pings and pongs")
	require.Zero(t, remakes.Load(), "a ping or a pong made coder's Conn again")
	rc.send(frameBytes(opText, []byte("a")), frameBytes(finBit|opCont, []byte("b")))
	for {
		op, p := rc.read()
		if op == opPing {
			rc.send(frameBytes(finBit|opPong, p))
			continue
		}
		require.Equal(t, byte(opText), op)
		require.Equal(t, "ab", string(p))
		break
	}
	require.Equal(t, int32(1), remakes.Load())
}
