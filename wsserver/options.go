package wsserver

import (
	"bufio"
	"log/slog"
	"net/http"
	"net/textproto"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/dispatchkit/dispatchkit/queue"
)

// SlowPolicy says what happens when a connection's outbound buffer is full.
type SlowPolicy uint8

const (
	// CloseSlow closes the connection with 1008 (policy violation): a client that cannot keep
	// up is dropped so that it never holds memory or delays anyone else. The default.
	CloseSlow SlowPolicy = iota
	// DropNewest refuses the message that did not fit (Send returns ErrSlowConsumer) and keeps
	// the connection; what was already queued is still delivered.
	DropNewest
	// DropOldest makes room for the new message by discarding the oldest ones still queued
	// (each counted as Dropped and told to the Observer); Send succeeds and the connection
	// stays. A client that falls behind gets the most recent messages, with a gap.
	DropOldest
	// Conflate keeps the latest value per key: a message sent with SendKeyed (or
	// Room.BroadcastKeyed) replaces the one with the same key still queued, in its place,
	// so the buffer fills only with distinct keys. A full buffer then drops the oldest, as
	// DropOldest. For market data, game state, presence: what a slow client needs is the
	// newest value of everything, not every value.
	Conflate
)

// String names the policy.
func (p SlowPolicy) String() string {
	switch p {
	case DropNewest:
		return "drop-newest"
	case DropOldest:
		return "drop-oldest"
	case Conflate:
		return "conflate"
	}
	return "close-slow"
}

// Options configures a Server. The zero value is safe: every field states its default, as
// coder/websocket's AcceptOptions and net/http's Server do, so a struct literal names only
// what it changes.
type Options struct {
	// ReadLimit is the largest message accepted, in bytes; a bigger one closes the connection
	// with 1009 (message too big). Default 32 KiB; negative means no limit.
	ReadLimit int64
	// SendBuffer is how many outbound messages may wait per connection. Default 256.
	SendBuffer int
	// SendBufferBytes bounds the bytes those messages hold. Default 4 MiB.
	SendBufferBytes int
	// SlowConsumer is the policy when the outbound buffer is full. Default CloseSlow.
	SlowConsumer SlowPolicy
	// SlowMark is the fill of the outbound buffer (a fraction of SendBuffer, or of
	// SendBufferBytes) at which a connection turns slow: OnSlow is called and Stats counts
	// it. Default 0 (or outside (0, 1]): 0.75.
	SlowMark float64
	// OnSlow, if set, is called with slow true when a connection's outbound buffer reaches
	// SlowMark, and with slow false when its writer has since caught up (written all it
	// had), so that the application can demote a slow client (send it less) and promote it
	// back, instead of losing it to the SlowConsumer policy. It runs on the connection's
	// queue, in order with its other callbacks, never after OnClose. Default nil.
	OnSlow func(c *Conn, slow bool)
	// MaxPending is how many received messages may wait for the handler per connection;
	// beyond it the connection's reader stops reading (TCP backpressure) until the handler
	// catches up. Default 32.
	MaxPending int

	// PingInterval is how long a connection may stay silent before the server pings it.
	// Default 30s; negative disables pings (and so the detection of vanished peers).
	PingInterval time.Duration
	// PongTimeout is how long a ping may wait for its pong; then the peer is taken as gone and
	// the connection is closed. Default 15s.
	PongTimeout time.Duration
	// IdleTimeout closes a connection that has sent no message (pongs do not count) for this
	// long, with 1001. Default 0: no idle limit.
	IdleTimeout time.Duration
	// WriteTimeout bounds a write's progress: a peer that takes no byte of what is written
	// to it for this long is cut (1006, ErrWriteFailed). A peer that reads steadily is never
	// cut, however long its backlog takes; the outbound buffer's limits bound that. Default
	// 10s.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the WebSocket handshake: ServeHTTP's response, and, for a
	// server made with HTTPServer, the time to read the request headers (so a client that
	// never finishes its request is dropped). Default 10s.
	HandshakeTimeout time.Duration

	// MaxConns limits the open connections; beyond it upgrades get 503. A slot is reserved
	// before the upgrade, so the limit is exact. Default 0: no limit.
	MaxConns int
	// OriginPatterns lists the other origins allowed to connect, as AcceptOptions.OriginPatterns
	// (path.Match patterns on the Origin's host). Default: same origin only.
	OriginPatterns []string
	// Subprotocols lists the subprotocols the server negotiates, in order of preference.
	Subprotocols []string
	// CompressionMode enables permessage-deflate when the client offers it. Default
	// websocket.CompressionDisabled (compression costs memory per connection).
	CompressionMode websocket.CompressionMode
	// Authenticate runs before the upgrade. An error wrapping ErrForbidden answers 403, any
	// other error 401; no upgrade happens. What it returns is kept as Conn.Auth.
	Authenticate func(r *http.Request) (any, error)

	// RateLimit is the frames per second a connection may send on average, with RateBurst
	// at once; a connection that exceeds it is closed with 1008. A message in one frame (the
	// usual case) counts once; each fragment of a fragmented message and each ping count
	// too, so that a message that never ends cannot bypass the limit (pongs and the close
	// frame do not count). Default 0: no limit.
	RateLimit float64
	// RateBurst is the bucket size for RateLimit. Default: RateLimit rounded up, at least 1.
	RateBurst int

	// HandlerWidth is how many handler callbacks run at once across all connections (the
	// width of the shared "ws.handlers" queue). Default GOMAXPROCS. That queue runs on a
	// Global root, whose width is GOMAXPROCS, so (GCD's rule: the smallest width along the
	// chain) no more than GOMAXPROCS callbacks run at once whatever HandlerWidth says: a
	// callback that blocks holds a slot, and one that waits for another connection's
	// callback to start can wait forever when GOMAXPROCS is 1.
	HandlerWidth int
	// PanicHandler is told about a panic in a callback, after the connection was closed with
	// 1011. Default: log it with log/slog. The server and other connections go on either way.
	PanicHandler func(c *Conn, recovered any, stack []byte)
	// Observer is told about connections, messages and sends (the tracing package implements
	// it). Default nil: one nil check per event.
	Observer Observer
	// QueueObserver is given to the server's queues: the shared handler queue, every
	// connection's queue (they inherit it from the handler queue) and every room's queue, so
	// that a tracer sees each callback's wait and run on its queue. A tracing.Observer serves
	// as both Observer and QueueObserver. Default nil: one nil check per block.
	QueueObserver queue.Observer
	// Broker carries room broadcasts to the Server's peers in other processes, so that a Room
	// spans them all (see Broker; the natsbroker package implements it over NATS). The
	// Server does not close it: close it after Shutdown. Default nil: rooms are in-process.
	Broker Broker

	// Logger gets the server's few log lines: one per abnormal close (connection id, remote
	// address, close code, reason, which side closed, cause), one per request Authenticate
	// refused (with its error), the Broker's failures and the panics of callbacks. Default
	// nil: slog.Default(), as it is when the line is written.
	Logger *slog.Logger
	// LogRate bounds the lines per second of abnormal closes and refusals (a token bucket
	// with a burst of twice that, at least 20), so that a flood of bad clients cannot flood
	// the log; the lines held back are counted in the next line out ("suppressed") and in
	// ServerStats.LogSuppressed. Default 0: 10 lines per second; negative: no limit.
	LogRate float64

	// RequestHeaders lists the upgrade request's headers that Conn.Header keeps for the
	// connection's life (canonical or not). Default nil: all of them but the handshake's own
	// (Connection, Upgrade, Sec-WebSocket-Key, -Version, -Extensions), which mean nothing
	// after the upgrade; an empty, non-nil slice keeps none. An idle connection holds what
	// is kept: a few hundred bytes for a browser's full header.
	RequestHeaders []string

	// Transport says how connections wait for their next message: the readiness
	// transport (a few epoll pollers hand a readable socket to its reader; an idle
	// connection holds no goroutine and no read buffer) or a reader goroutine per
	// connection. Default TransportAuto: readiness on Linux for plain sockets, a goroutine
	// for TLS and elsewhere.
	Transport Transport

	// ReadBufferSize is the size of the buffer the reader parses frames from. A larger one
	// takes several small messages per system call; each idle connection holds it. Default 512.
	// The goroutine transport only: the readiness transport reads through a pooled 4 KiB
	// buffer that an idle connection does not hold.
	ReadBufferSize int
}

const (
	defaultReadLimit       = 32 << 10
	defaultSendBuffer      = 256
	defaultSendBufferBytes = 4 << 20
	defaultMaxPending      = 32
	defaultPingInterval    = 30 * time.Second
	defaultPongTimeout     = 15 * time.Second
	defaultWriteTimeout    = 10 * time.Second
	defaultHandshake       = 10 * time.Second
	defaultReadBuffer      = 512
	defaultSlowMark        = 0.75
	// closeGrace bounds a polite close: the close frame's write and the wait for the peer's.
	closeGrace = 5 * time.Second
)

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.ReadLimit == 0 {
		o.ReadLimit = defaultReadLimit
	}
	if o.SendBuffer <= 0 {
		o.SendBuffer = defaultSendBuffer
	}
	if o.SendBufferBytes <= 0 {
		o.SendBufferBytes = defaultSendBufferBytes
	}
	if o.MaxPending <= 0 {
		o.MaxPending = defaultMaxPending
	}
	if o.PingInterval == 0 {
		o.PingInterval = defaultPingInterval
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = defaultPongTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshake
	}
	if o.RateLimit > 0 && o.RateBurst <= 0 {
		o.RateBurst = max(1, int(o.RateLimit+0.999))
	}
	if o.HandlerWidth <= 0 {
		o.HandlerWidth = runtime.GOMAXPROCS(0)
	}
	o.Transport = o.Transport.resolve()
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = defaultReadBuffer
	}
	return o
}

// acceptOptions is what coder/websocket's Accept gets.
func (o *Options) acceptOptions() *websocket.AcceptOptions {
	a := &websocket.AcceptOptions{
		Subprotocols:    o.Subprotocols,
		OriginPatterns:  o.OriginPatterns,
		CompressionMode: o.CompressionMode,
		OnPingReceived:  pingHook,
	}
	if o.PingInterval > 0 {
		a.OnPongReceived = pongHook
	}
	return a
}

// handshakeHeaders are the request headers that only the upgrade needed.
var handshakeHeaders = map[string]bool{"Connection": true, "Upgrade": true, "Sec-Websocket-Key": true,
	"Sec-Websocket-Version": true, "Sec-Websocket-Extensions": true}

// keptHeader is what a connection keeps of the request's header (see RequestHeaders): the
// kept fields in their wire form ("Key: value\r\n" each), "" when nothing is kept. One
// string instead of an http.Header: a map with a single entry takes some 400 bytes, which
// every idle connection of a client sending a User-Agent would hold.
func (o *Options) keptHeader(h http.Header) string {
	var b strings.Builder
	keep := func(k string, v []string) {
		for _, x := range v {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(x)
			b.WriteString("\r\n")
		}
	}
	if o.RequestHeaders == nil {
		for k, v := range h {
			if !handshakeHeaders[k] {
				keep(k, v)
			}
		}
		return b.String()
	}
	for i, k := range o.RequestHeaders {
		k = http.CanonicalHeaderKey(k)
		if !slices.ContainsFunc(o.RequestHeaders[:i], func(x string) bool { return http.CanonicalHeaderKey(x) == k }) {
			keep(k, h.Values(k))
		}
	}
	return b.String() // newRequestInfo copies it into a string of its own size
}

// parseHeader turns what keptHeader kept back into an http.Header (nil for none).
func parseHeader(kept string) http.Header {
	if kept == "" {
		return nil
	}
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(kept + "\r\n")))
	h, _ := r.ReadMIMEHeader() // it parsed it once already: it parses
	return http.Header(h)
}
