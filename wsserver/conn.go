package wsserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/dispatchkit/dispatchkit/queue"
)

// Connection states, kept in Conn.state (written under Conn.mu, read without it).
const (
	stateOpen    uint32 = iota
	stateClosing        // a close was decided: Send refuses, received messages are dropped
	stateEnded          // the reader has stopped: the connection is gone
)

// A Conn is one WebSocket connection. Its callbacks run on its own serial queue (Queue), so
// what only they touch needs no lock. Send, SendText, SendJSON and Close never block and may
// be called from any goroutine.
type Conn struct {
	id   uint64
	s    *Server
	ws   atomic.Pointer[websocket.Conn] // nil while the readiness transport has dropped it (see coder)
	bw   *batchWriter                   // it holds the socket (sock): not kept twice
	pc   *pollConn                      // the readiness transport's socket wrapper; nil under the goroutine one
	q    *queue.Queue
	req  *requestInfo
	more atomic.Pointer[connMore] // what only some connections need; made on first use
	val  any                      // the handler's per-connection state; touched only on q
	vals *[]keyVal                // the values of Keys (a pointer: most connections have none); q only

	// The fields are ordered so that the struct has no padding (an idle connection holds it).
	backlog atomic.Int32  // messages read and not yet handled
	seen    atomic.Uint32 // keepalive epoch of the last message or pong
	heard   atomic.Uint32 // keepalive epoch of the last message
	flags   atomic.Uint32 // flagPinging, flagPaused, flagHalted, flagInline, flagHeld: one word, not five
	pauses  atomic.Uint32 // how many times it has waited
	pingAt  atomic.Uint32 // keepalive epoch the sweep sent it at; 0: a goroutine waits for it
	state   atomic.Uint32 // stateOpen, stateClosing, stateEnded

	mu        sync.Mutex // guards what follows, but over
	over      bool       // OnClose has run: no callback after it; q only
	writing   bool       // a writer goroutine is running
	slow      bool       // the buffer reached SlowMark and the writer has not caught up since
	closeDone bool       // the close handshake is over (or was given up): see fail
	slot      int32      // 1 + its index in Server.conns, 0 when not in it; under Server.mu
	proto     uint16     // the subprotocol: 0 none, i+1 Options.Subprotocols[i], protoKept: ask ws (in what was padding)
	out       []outMsg   // outbound buffer; nil while empty
	outBytes  int
	closeReq  *closeReq // a close frame to send once out is written
}

// A Conn's flags (Conn.flags), read and written without its lock.
const (
	flagPinging   uint32 = 1 << iota // a ping is in flight
	flagPaused                       // the reader waits for the handler (MaxPending)
	flagHalted                       // the server closed it: queued messages are dropped
	flagInline                       // a reader let it go to run a message inline and has not entered the queue yet
	flagHeld                         // blocks are held for releaseHeld (hold): set and cleared under mu
	flagCoderGone                    // the reader finished with no coder Conn: none is made again (coder); under mu
)

func (c *Conn) flag(f uint32) bool { return c.flags.Load()&f != 0 }

func (c *Conn) setFlag(f uint32, on bool) {
	if on {
		c.flags.Or(f)
	} else {
		c.flags.And(^f)
	}
}

// raiseFlag sets f and reports whether it was clear (a CompareAndSwap from false to true).
func (c *Conn) raiseFlag(f uint32) bool { return c.flags.Or(f)&f == 0 }

// connMore holds what an idle connection seldom needs, so that the many that never need it
// do not carry it: made at the upgrade when the connection has an Observer, a rate limit or
// an Authenticate value, otherwise on first use (Context, joining a room, a close, a reader
// waiting for its handler under the goroutine transport).
type connMore struct {
	// Set at the upgrade, before the connection is seen by anything else.
	root   context.Context // the Observer's per-connection context; nil without an Observer
	auth   any             // what Authenticate returned
	remote string          // http.Request.RemoteAddr when it is not the socket's address
	opened int64           // with an Observer: when it opened, nanoseconds since the server's start (monotonic)

	tokens float64   // rate limit bucket, reader only
	refill time.Time // when tokens was last topped up, reader only

	resume atomic.Pointer[chan struct{}] // made the first time the reader has to wait (goroutine transport)

	// Under Conn.mu.
	cause  *CloseError // why the server ended the connection; nil if it did not
	why    string      // the Observer's reason for cause
	rooms  []*Room
	held   []func()        // what queues blocks held while a reader was about to run a message inline (hold)
	ctx    context.Context // made by Context on first use
	cancel context.CancelFunc

	end context.Context // the Observer's context of the close (CloseObserver); set before OnClose is queued
}

// extra returns the connection's connMore, making it on first use.
func (c *Conn) extra() *connMore {
	if m := c.more.Load(); m != nil {
		return m
	}
	m := new(connMore)
	if c.more.CompareAndSwap(nil, m) {
		return m
	}
	return c.more.Load()
}

// root is the Observer's per-connection context (nil without an Observer).
func (c *Conn) root() context.Context {
	if m := c.more.Load(); m != nil {
		return m.root
	}
	return nil
}

// openedAt is when the connection opened, in nanoseconds since the server's start: kept
// only with an Observer (0 without).
func (c *Conn) openedAt() int64 {
	if m := c.more.Load(); m != nil {
		return m.opened
	}
	return 0
}

// end is the Observer's context of the close (nil without a CloseObserver).
func (c *Conn) end() context.Context {
	if m := c.more.Load(); m != nil {
		return m.end
	}
	return nil
}

// requestInfo is what a Conn keeps of its upgrade request: the request's URI (as net/http
// parsed URL from), a newline, then the kept header fields as keptHeader wrote them. One
// string, so one allocation of its own size: a short URI on its own ("/") would go to the
// allocator's 16-byte blocks for tiny objects and keep a whole block alive, with whatever
// else of the request had been put in it. The client's address is not kept: the socket has
// it (see Conn.RemoteAddr).
type requestInfo struct{ s string }

// newRequestInfo copies uri and the kept header into a string of their own (a URI from
// net/http is a slice of the request line, which can then go).
func newRequestInfo(uri, header string) *requestInfo {
	if uri == "/" && header == "" {
		return &requestInfo{"/\n"} // the most common one: no allocation for the string
	}
	return &requestInfo{uri + "\n" + header}
}

// uri returns the request's URI ("" for a requestInfo{} made in a test).
func (r *requestInfo) uri() string {
	u, _, _ := strings.Cut(r.s, "\n")
	return u
}

// header returns the kept header fields.
func (r *requestInfo) header() string {
	_, h, _ := strings.Cut(r.s, "\n")
	return h
}

type closeReq struct {
	code   websocket.StatusCode
	reason string
}

// ID returns the connection's id, unique within the process.
func (c *Conn) ID() uint64 { return c.id }

// Queue returns the connection's serial queue, the one its callbacks run on. Blocks
// submitted to it run in order with the callbacks: use it to touch the connection's state
// from elsewhere.
func (c *Conn) Queue() *queue.Queue { return c.q }

// Value returns the value SetValue stored (nil before). Like SetValue, call it only from
// the connection's callbacks or blocks on its Queue: the queue owns it, so it needs no lock.
func (c *Conn) Value() any { return c.val }

// SetValue stores the handler's per-connection state (a session, a parser, counters). Call
// it only from the connection's callbacks or blocks on its Queue. Key does the same with a
// type (and several values per connection).
func (c *Conn) SetValue(v any) { c.val = v }

// RemoteAddr returns the client's address as the request had it. It is formatted anew
// from the socket's address on each call (a connection does not keep the string), unless
// a middleware had rewritten the request's (http.Request.RemoteAddr).
func (c *Conn) RemoteAddr() string {
	if m := c.more.Load(); m != nil && m.remote != "" {
		return m.remote
	}
	if nc := c.sock(); nc != nil {
		if a := nc.RemoteAddr(); a != nil {
			return a.String()
		}
	}
	return ""
}

// sock returns the connection's socket, as net/http's Hijack returned it (nil for a
// connection made in a test without a batch writer).
func (c *Conn) sock() net.Conn {
	if c.bw == nil {
		return nil
	}
	return c.bw.nc
}

// Header returns the upgrade request's header, the fields Options.RequestHeaders keeps (nil
// when none is). The connection keeps them in their wire form and parses them anew on
// every call (an idle connection spares a map): keep the result if you need it often.
func (c *Conn) Header() http.Header { return parseHeader(c.req.header()) }

// URL returns the upgrade request's URL (path and query). The connection keeps only the
// request's URI and parses it anew on every call (an idle connection spares the parsed
// form): keep the result if you need it often.
func (c *Conn) URL() *url.URL {
	u, err := url.ParseRequestURI(c.req.uri())
	if err != nil {
		return &url.URL{} // no request (a connection made in a test)
	}
	return u
}

// Auth returns what Options.Authenticate returned for this connection (nil without it).
func (c *Conn) Auth() any {
	if m := c.more.Load(); m != nil {
		return m.auth
	}
	return nil
}

// Subprotocol returns the negotiated subprotocol ("" for none).
func (c *Conn) Subprotocol() string {
	switch c.proto {
	case 0:
		return ""
	case protoKept:
		if ws := c.ws.Load(); ws != nil {
			return ws.Subprotocol()
		}
		return ""
	}
	return c.s.opts.Subprotocols[c.proto-1]
}

// Context returns a context that ends when the connection ends. With an Observer it carries
// the connection's trace.
func (c *Conn) Context() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.extra()
	if m.ctx == nil {
		parent := m.root
		if parent == nil {
			parent = context.Background()
		}
		m.ctx, m.cancel = context.WithCancel(parent)
		if c.state.Load() == stateEnded {
			m.cancel()
		}
	}
	return m.ctx
}

// String identifies the connection in logs.
func (c *Conn) String() string { return fmt.Sprintf("ws conn %d (%s)", c.id, c.RemoteAddr()) }

// Send queues m for the connection and returns at once. When nothing is queued and the
// socket takes the whole frame at once, it is written from the caller's goroutine with one
// non-blocking write; otherwise a writer goroutine, started while there is something to
// write, sends it. It returns ErrClosed if the connection is closed or closing,
// ErrSlowConsumer if the outbound buffer is full (then the SlowConsumer policy applies), and
// an error for a type other than websocket.MessageText or MessageBinary. m.Data must not be
// modified afterwards.
func (c *Conn) Send(m Message) error {
	var ctx context.Context
	if c.s.obs != nil {
		ctx = queue.CurrentContext()
	}
	return c.enqueue(ctx, m)
}

// SendText sends s as a text message.
func (c *Conn) SendText(s string) error { return c.Send(Text(s)) }

// SendJSON sends v encoded as JSON in a text message.
func (c *Conn) SendJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wsserver: encode JSON: %w", err)
	}
	return c.Send(Message{Type: websocket.MessageText, Data: b})
}

// Close starts closing the connection: what is already queued is written, then a close
// frame with code and reason, and OnClose follows once the peer has answered (or after a few
// seconds). It returns at once; ErrClosed if a close was already under way, and an error
// wrapping ErrInvalidCloseCode for a code a close frame cannot carry (1004-1006, 1015, below
// 1000, 1016-2999, above 4999): then nothing happens. A reason longer than a close frame
// takes (123 bytes) is cut at a character boundary, and invalid UTF-8 in it is replaced:
// the close goes out either way.
func (c *Conn) Close(code websocket.StatusCode, reason string) error {
	if !sendableCloseCode(code) {
		return fmt.Errorf("%w: %d", ErrInvalidCloseCode, int(code))
	}
	reason = closeReason(reason)
	var cause error = ErrClosed
	why := ReasonServerClose
	if code == websocket.StatusNormalClosure {
		why = ReasonNormal
	}
	if !c.closeWith(code, reason, cause, why, true) {
		return ErrClosed
	}
	return nil
}

// maxCloseReason is the longest reason a close frame carries (125 bytes less the code).
const maxCloseReason = 123

// sendableCloseCode reports whether code may be sent in a close frame (RFC 6455 7.4 and the
// IANA registry).
func sendableCloseCode(code websocket.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

// closeReason makes reason fit a close frame: valid UTF-8, at most maxCloseReason bytes,
// cut before a character that would not fit.
func closeReason(reason string) string {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) <= maxCloseReason {
		return reason
	}
	n := maxCloseReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}

// closeWith decides to close the connection for cause (the first decision wins) and has the
// writer send the close frame, after the queued messages if flush is set. It reports whether
// this call made the decision.
func (c *Conn) closeWith(code websocket.StatusCode, reason string, cause error, why string, flush bool) bool {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return false
	}
	c.setCauseLocked(code, reason, cause, why)
	if !flush {
		c.discardLocked()
	}
	c.closeReq = &closeReq{code: code, reason: reason}
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
	return true
}

// abort ends the connection at once, without a close frame: the peer is gone or stuck.
func (c *Conn) abort(code websocket.StatusCode, cause error, why string) {
	c.mu.Lock()
	if c.state.Load() == stateOpen {
		c.setCauseLocked(code, "", cause, why)
	}
	if c.state.Load() != stateEnded {
		c.state.Store(stateClosing)
	}
	c.discardLocked()
	c.closeDoneLocked()
	c.mu.Unlock()
	// The reader wakes up with an error and finishes the connection.
	if c.pc != nil {
		_ = c.pc.Close() // out of epoll, then closed; an armed reader is woken
	} else {
		_ = c.sock().Close()
	}
}

// closeDoneLocked records that the close handshake is over: a reader waiting in fail goes on.
func (c *Conn) closeDoneLocked() {
	c.closeDone = true
	if g := c.bw.guard; g.closeWait != nil {
		close(g.closeWait)
		g.closeWait = nil
	}
}

// readCtx is the context the reader hands coder/websocket's Reader: Background's behaviour
// (no deadline, never done: a Read that ends by itself would close the connection) with the
// connection as a value. coder/websocket calls the ping and pong hooks with it (or a context
// made from it), which is how one pair of functions serves every connection: no closure
// per connection (40 bytes that an idle connection held).
type readCtx Conn

// readCtxKey is the key under which a readCtx holds its connection.
type readCtxKey struct{}

func (*readCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*readCtx) Done() <-chan struct{}       { return nil }
func (*readCtx) Err() error                  { return nil }

func (r *readCtx) Value(key any) any {
	if key == (readCtxKey{}) {
		return (*Conn)(r)
	}
	return nil
}

// readerConn is the connection whose reader ctx comes from; nil for a read of
// coder/websocket's own (the close handshake's).
func readerConn(ctx context.Context) *Conn {
	c, _ := ctx.Value(readCtxKey{}).(*Conn)
	return c
}

// pingHook is coder/websocket's OnPingReceived: the connection answers (onPing). A ping
// read by the close handshake gets no pong: the close frame went out before it.
func pingHook(ctx context.Context, p []byte) bool {
	if c := readerConn(ctx); c != nil {
		return c.onPing(ctx, p)
	}
	return false
}

// pongHook is coder/websocket's OnPongReceived (with keepalive): the peer is alive.
func pongHook(ctx context.Context, _ []byte) {
	if c := readerConn(ctx); c != nil {
		c.seen.Store(c.s.ka.epoch.Load())
	}
}

// onPing answers a ping. In direct mode it writes the pong itself, never after the close
// frame (coder/websocket would, fail, and end the connection with unread input: a reset
// that can cost the peer its last messages); otherwise it leaves the pong to coder/websocket
// unless a close is under way.
func (c *Conn) onPing(_ context.Context, p []byte) bool {
	if c.bw.direct {
		if c.pc != nil && c.pc.blockBegin() {
			defer c.pc.blockEnd() // the pong may wait for the socket: see pollSet
		}
		c.bw.writePong(p, min(closeGrace, c.s.opts.WriteTimeout))
		return false
	}
	return c.state.Load() == stateOpen
}

func (c *Conn) setCauseLocked(code websocket.StatusCode, reason string, cause error, why string) {
	if m := c.extra(); m.cause == nil {
		m.cause, m.why = &CloseError{Code: code, Reason: reason, Cause: cause}, why
	}
	c.setFlag(flagHalted, true)
	c.state.Store(stateClosing)
}

// causeLocked returns why the server ended the connection (nil if it did not). c.mu is held.
func (c *Conn) causeLocked() *CloseError {
	if m := c.more.Load(); m != nil {
		return m.cause
	}
	return nil
}

// discardLocked drops the outbound buffer (counted as dropped).
func (c *Conn) discardLocked() {
	if n := len(c.out); n > 0 {
		c.s.stats.dropped.Add(uint64(n))
		if obs := c.s.obs; obs != nil {
			for _, e := range c.out {
				obs.Written(e.ctx, c, e.m, ErrClosed)
			}
		}
		putOut(c.out)
		c.out, c.outBytes = nil, 0
	}
}

// rooms bookkeeping, so that a connection leaves its rooms when it ends.

func (c *Conn) addRoom(r *Room) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() == stateEnded {
		return false
	}
	m := c.extra()
	m.rooms = append(m.rooms, r)
	return true
}

func (c *Conn) removeRoom(r *Room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.more.Load()
	if m == nil {
		return
	}
	for i, x := range m.rooms {
		if x == r {
			last := len(m.rooms) - 1
			m.rooms[i], m.rooms[last] = m.rooms[last], nil
			m.rooms = m.rooms[:last]
			if last == 0 {
				m.rooms = nil
			}
			return
		}
	}
}
