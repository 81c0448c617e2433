package wsserver

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
)

// An idle connection under the readiness transport holds no coder/websocket Conn.
//
// coder/websocket's Conn, with what it makes beside it (its two one-slot-channel locks, a
// message reader and writer) and the bufio.Reader and bufio.Writer it reads and writes
// through, is ~1.6 KB: over half of what an idle connection held. On the readiness
// transport it is needed for little: whole single-frame text and binary messages, pings and
// pongs are taken past it (frameGuard.takeMessage, takeControl: the pings answered and the
// pongs recorded through the hooks coder would call), data frames are written by the
// batchWriter (direct mode), and pongs are written by onPing. coder's Conn reads the rest:
// close frames, fragmented messages, messages that do not fit the reader's buffer, frames
// the guard fails, and it does the close handshake. So the reader drops it when it lets its goroutine go at a message boundary
// with nothing of coder's in flight (pollConn.dropCoder), and whoever needs it next makes
// it again (Conn.coder): coder/websocket's only server constructor, Accept, is called with
// a synthetic upgrade request (remakeReqs) and a ResponseWriter that discards the 101
// response and hands over the connection's pollConn with fresh small buffers
// (remakeWriter). Nothing of coder's state outlives a message boundary there: its read
// state is a message's, its write state is used only by the close handshake (and by
// compression and its own Ping, which such a connection never uses), and the read limit is
// set again. Making it again costs ~3 µs and ~2 KB of garbage (BenchmarkCoderRemake):
// connections that exchange whole small messages, pings and pongs never pay it. A reader episode that read a data
// message through coder's Conn (fragmented, or larger than the read buffer) keeps it
// (pollConn.keepWS): such a peer is likely to send another, and making it again per message
// cost 17% more CPU per 8 KiB echo. It is dropped at the end of the first episode that
// reads no data message through it (for an idle peer, the one that reads the pong to
// keepalive's next ping).
//
// Who may touch Conn.ws, and when (the rules the code below keeps):
//
//   - Only the reader drops it (pollConn.dropCoder, dropQuiet): the goroutine that moved
//     pollConn.state to readerRunning, at a message boundary with the socket empty, before it
//     moves the state to readerArmed (after that, another reader may start: when it lets
//     its goroutine go, and in letGo, before it runs a handler inline), so that an armed
//     connection holds no coder Conn unless keepWS kept it. It drops it under
//     Conn.mu, only while the connection is open (stateOpen), only in direct mode (no
//     compression: coder frames no data, and keepalive pings with a frame of its own, never
//     with coder's Ping, so no pong is awaited inside coder), only when the subprotocol can
//     be told without it (Conn.proto), only with nothing buffered in coder's reader, no
//     error left for it to read, no fragmented message or frame under way (the guard's
//     boundary), no close seen, and not once a close handshake reads (blocking). It clears
//     the finalizer newConn set first: a dropped Conn collected with its finalizer would
//     close the live socket.
//   - Anyone may make it again (Conn.coder), under Conn.mu, so that two parties needing it
//     at once get the same one. Besides the reader, that is only the close handshake
//     (Conn.closeHandshake): it runs once a close was decided (stateClosing, set under
//     Conn.mu, so no drop can follow), after setBlocking, which waits until the reader is not
//     touching the stream outside coder's lock (flagOutside) and makes it stay out: the
//     remake's new bufio.Reader (pollConn.br) is never written while the reader reads it.
//   - After the reader finished with none (finish: flagCoderGone, under Conn.mu), none is made
//     again: a close handshake decided meanwhile finds the socket closed and has nothing to do.
//
// The goroutine transport (and TLS) keeps coder's Conn for the connection's life.

// protoKept is Conn.proto for a subprotocol that only coder's Conn can tell (the client
// spelled it in another case than Options.Subprotocols): the Conn is kept.
const protoKept = 1<<16 - 1

// remakeKey is the synthetic request's Sec-WebSocket-Key: any 16 bytes in base64.
const remakeKey = "ZGlzcGF0Y2hraXQtbGF6eQ=="

// newRemakeRequests returns the synthetic upgrade requests coder/websocket's Accept is
// given to make a Conn again, one per subprotocol (index Conn.proto): shared by the
// server's connections (Accept only reads them).
func newRemakeRequests(subprotocols []string) []*http.Request {
	reqs := make([]*http.Request, 1+len(subprotocols))
	for i := range reqs {
		h := http.Header{}
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", "websocket")
		h.Set("Sec-WebSocket-Version", "13")
		h.Set("Sec-WebSocket-Key", remakeKey)
		if i > 0 {
			h.Set("Sec-WebSocket-Protocol", subprotocols[i-1])
		}
		reqs[i] = &http.Request{Method: http.MethodGet, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			URL: &url.URL{Path: "/"}, Host: "wsserver.remake", Header: h}
	}
	return reqs
}

// protoIndex returns Conn.proto for the subprotocol coder/websocket negotiated.
func protoIndex(sp string, subprotocols []string) uint16 {
	if sp == "" {
		return 0
	}
	for i, p := range subprotocols {
		if p == sp && i+1 < protoKept {
			return uint16(i + 1)
		}
	}
	return protoKept
}

// remakeWriter is the ResponseWriter a Conn is made again through: the 101 response goes
// nowhere (the client had it at the upgrade), and Hijack hands over the connection.
type remakeWriter struct {
	h   http.Header
	nc  net.Conn
	brw *bufio.ReadWriter
}

func (w *remakeWriter) Header() http.Header         { return w.h }
func (w *remakeWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *remakeWriter) WriteHeader(int)             {}

func (w *remakeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) { return w.nc, w.brw, nil }

var remakePool = sync.Pool{New: func() any { return &remakeWriter{h: make(http.Header, 4)} }}

// coder returns the connection's coder/websocket Conn, making it again if the reader
// dropped it; nil once the reader finished without one (see the rules above).
func (c *Conn) coder() *websocket.Conn {
	if ws := c.ws.Load(); ws != nil {
		return ws
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.ws.Load()
	if ws == nil && !c.flag(flagCoderGone) {
		ws = c.remakeLocked()
		c.ws.Store(ws)
	}
	return ws
}

// testHookRemake, if set, runs each time a connection's coder Conn is made again (tests only).
var testHookRemake atomic.Pointer[func(c *Conn)]

// remakeLocked makes the connection's coder/websocket Conn again: see above. c.mu is held.
func (c *Conn) remakeLocked() *websocket.Conn {
	stepHook(&testHookRemake, c)
	pc := c.pc
	br := bufio.NewReaderSize(pc, minReadBuffer)
	w := remakePool.Get().(*remakeWriter)
	w.nc, w.brw = pc, bufio.NewReadWriter(br, bufio.NewWriterSize(c.bw, writeBufferSize(true)))
	ws, err := websocket.Accept(w, c.s.remakeReqs[c.proto], c.s.accept)
	clear(w.h)
	w.nc, w.brw = nil, nil
	remakePool.Put(w)
	if err != nil {
		return nil // cannot happen: the request is valid; the caller takes the connection as closed
	}
	br.Reset(pc) // Accept's io.MultiReader replays nothing: read the pollConn directly
	ws.SetReadLimit(c.s.readLimit())
	pc.br = br
	return ws
}

// dropCoderLocked drops ws, the connection's coder/websocket Conn: see dropCoder. c.mu is
// held, and the caller is the reader.
func (c *Conn) dropCoderLocked(ws *websocket.Conn) {
	runtime.SetFinalizer(ws, nil) // its finalizer would close the socket
	c.ws.Store(nil)
	c.pc.br = nil
}

// coderDroppable reports whether the connection may go without its coder/websocket Conn
// while idle, as far as its settings go (see the rules above).
func (c *Conn) coderDroppable() bool {
	return c.pc != nil && c.bw.direct && c.bw.raw != nil && c.proto != protoKept
}
