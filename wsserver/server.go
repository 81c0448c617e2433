package wsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/dispatchkit/dispatchkit/queue"
)

// A Server accepts WebSocket connections (it is an http.Handler: mount it on a path) and runs
// each connection's callbacks on that connection's serial queue. Every connection queue
// targets one shared concurrent queue, "ws.handlers", whose width (Options.HandlerWidth,
// GOMAXPROCS by default) bounds how many callbacks run at once: all cores busy, none
// oversubscribed.
type Server struct {
	h         Handler
	opts      Options
	obs       Observer
	broker    Broker
	bstate    brokerState
	handlers  *queue.Queue
	nextID    atomic.Uint64
	closing   atomic.Bool
	slots     atomic.Int64 // MaxConns: reserved before the upgrade, released after OnClose
	stats     counters
	ka        keepalive
	rooms     sync.Map // name -> *Room, the rooms alive
	roomCount atomic.Int64
	logLimit  *logLimiter
	start     time.Time // Conn.opened counts from it (monotonic)
	// The outbound levels at which a connection turns slow (Options.SlowMark).
	slowMsgs, slowBytes int
	// What coder/websocket's Accept gets, at the upgrade and when a connection's Conn is
	// made again (coder.go): the options, and the synthetic requests, one per subprotocol.
	accept     *websocket.AcceptOptions
	remakeReqs []*http.Request

	// The registry of open connections, for Shutdown, Stats and keepalive. A plain mutex:
	// each connection takes it twice in its life, and Shutdown needs a consistent view.
	// A dense slice rather than a map: each Conn keeps its index (Conn.slot), and leaving
	// moves the last one into its place, so that the registry costs a pointer per
	// connection instead of a map entry's ~37 B.
	mu    sync.Mutex
	conns []*Conn
	// The connections out of conns whose Observer's Closed has not yet returned (retire).
	retiring int
	idle     chan struct{} // made by Shutdown, closed when conns is empty and none is retiring
}

// readInServeHTTP makes ServeHTTP's goroutine the reader instead of a fresh one; only the
// memory measurement sets it, to compare the two.
var readInServeHTTP = false

// New returns a server that calls h for every connection. opts' zero value is safe.
func New(h Handler, opts Options) *Server {
	if h == nil {
		panic("wsserver: New with a nil Handler (pass HandlerFuncs{} for a server that does nothing)")
	}
	o := opts.withDefaults()
	s := &Server{
		h:        h,
		opts:     o,
		obs:      activeObserver(o.Observer),
		broker:   o.Broker,
		handlers: queue.NewConcurrent("ws.handlers", queue.WithWidth(o.HandlerWidth), queue.WithObserver(o.QueueObserver)),
		logLimit: newLogLimiter(o.LogRate),
		start:    time.Now(),
	}
	s.slowMsgs, s.slowBytes = o.slowMarks()
	s.accept = o.acceptOptions()
	s.remakeReqs = newRemakeRequests(o.Subprotocols)
	return s
}

// readLimit is what coder/websocket's SetReadLimit gets.
func (s *Server) readLimit() int64 {
	if s.opts.ReadLimit < 0 {
		return -1
	}
	return s.opts.ReadLimit
}

// HandlerQueue returns the shared concurrent queue every connection's queue targets.
func (s *Server) HandlerQueue() *queue.Queue { return s.handlers }

// HTTPServer returns an http.Server for addr that serves h (the Server itself if h is nil),
// with timeouts that keep what a client holds before its upgrade bounded:
//   - ReadHeaderTimeout HandshakeTimeout: a client that never finishes its request is dropped;
//   - IdleTimeout HandshakeTimeout: a keep-alive connection waiting for its next request (one
//     that sent a plain request, or was refused) is closed, not kept forever;
//   - when h is nil, ReadTimeout and WriteTimeout HandshakeTimeout as well (an upgrade never
//     takes longer; the WebSocket connection clears them). With an h of your own they stay
//     unset, since its other handlers may stream or take uploads: set them yourself.
//
// Shutting it down does not close the WebSocket connections (net/http forgets hijacked
// ones): call the Server's Shutdown too.
func (s *Server) HTTPServer(addr string, h http.Handler) *http.Server {
	t := s.opts.HandshakeTimeout
	hs := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: t, IdleTimeout: t}
	if h == nil {
		hs.Handler = s
		hs.ReadTimeout, hs.WriteTimeout = t, t
	}
	return hs
}

// ServeHTTP upgrades the request to a WebSocket connection: it checks the server is open,
// reserves a slot under MaxConns and runs Authenticate, all before the upgrade, then queues
// OnOpen and starts the connection's reader.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var root context.Context
	if s.obs != nil {
		root = s.obs.Handshake(context.WithoutCancel(r.Context()), r)
	}
	if s.closing.Load() {
		s.reject(root, w, r, http.StatusServiceUnavailable, "shutdown")
		return
	}
	if max := int64(s.opts.MaxConns); max > 0 {
		if s.slots.Add(1) > max {
			s.slots.Add(-1)
			s.reject(root, w, r, http.StatusServiceUnavailable, "max_conns")
			return
		}
	}
	c, ok := s.upgrade(root, w, r)
	if !ok {
		s.releaseSlot()
		return
	}
	if !s.register(c) {
		// Shutdown began during the upgrade: the connection never opens.
		s.stats.rejected.Add(1)
		if s.obs != nil {
			s.obs.Refused(root, r, http.StatusServiceUnavailable, "shutdown")
		}
		c.closeHandshake(websocket.StatusGoingAway, "server shutting down", min(closeGrace, s.opts.HandshakeTimeout))
		s.releaseSlot()
		return
	}
	if s.obs != nil {
		s.obs.Opened(c.root(), c)
	}
	if s.obs != nil {
		// OnOpen belongs to the connection's trace (the handshake's), not to one of its own.
		c.q.AsyncContext(c.root(), func(context.Context) { c.onOpen() })
	} else {
		c.q.Async(c.onOpen)
	}
	if c.pc != nil {
		if c.pc.register(c) == nil {
			// The first run reads what came with the upgrade (epoll would not report it)
			// and arms the socket; from then on the poller starts the reader.
			c.pc.run()
			return
		}
		c.pc.setBlocking() // no poller: the wrapper reads as a plain socket
	}
	if readInServeHTTP {
		c.readLoop()
		return
	}
	// A fresh goroutine lets net/http's request state go when ServeHTTP returns.
	go c.readLoop()
}

// upgrade authenticates and accepts the WebSocket handshake, returning the new connection.
func (s *Server) upgrade(root context.Context, w http.ResponseWriter, r *http.Request) (*Conn, bool) {
	var auth any
	if s.opts.Authenticate != nil {
		a, err := s.authenticate(r)
		if err != nil {
			status, why := http.StatusUnauthorized, "unauthorized"
			if errors.Is(err, ErrForbidden) {
				status, why = http.StatusForbidden, "forbidden"
			}
			// The client gets only the status; the reason is for the operator.
			s.log(slog.LevelInfo, "wsserver: upgrade refused by Authenticate",
				slog.String("remote", r.RemoteAddr), slog.Int("status", status), slog.String("err", err.Error()))
			s.reject(root, w, r, status, why)
			return nil, false
		}
		auth = a
	}
	// Bound the 101 response: a client that does not read it is not worth a goroutine.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	c := &Conn{id: s.nextID.Add(1), s: s}
	if s.obs != nil || auth != nil || s.opts.RateLimit > 0 {
		// Set before anything else sees the connection: read without a lock.
		c.more.Store(&connMore{root: root, auth: auth})
	}
	hw := &hijackWriter{ResponseWriter: w, readSize: s.opts.ReadBufferSize, writeTimeout: s.opts.WriteTimeout,
		poll: s.opts.Transport == TransportReadiness}
	ws, err := websocket.Accept(hw, r, s.accept)
	if err != nil {
		// Accept has answered (400, 403 for a foreign origin, 426, ...).
		s.stats.rejected.Add(1)
		if s.obs != nil {
			s.obs.Refused(root, r, hw.status, "handshake")
		}
		if hw.nc != nil {
			_ = hw.nc.Close()
		}
		return nil, false
	}
	_ = hw.nc.SetDeadline(time.Time{}) // net/http's deadlines do not apply to the WebSocket
	hw.unwrapReader()
	ws.SetReadLimit(s.readLimit())
	c.ws.Store(ws)
	c.bw, c.pc = hw.bw, hw.pc
	c.proto = protoIndex(ws.Subprotocol(), s.opts.Subprotocols)
	if s.opts.RateLimit > 0 {
		c.bw.guard.allow = c.allow
	}
	// One label for every connection queue (its id is Conn.ID): metrics stay low-cardinality.
	// No profiler labels of its own: its blocks show under "ws.handlers", which spares a
	// labels context per connection (~120 B) and a label switch per drain. Observed, its key
	// is the connection's id, so spans and the inspector say which connection it is.
	key := ""
	if s.opts.QueueObserver != nil {
		key = strconv.FormatUint(c.id, 10)
	}
	c.q = queue.NewSerial("ws.conn", queue.WithTarget(s.handlers), queue.WithProfileLabels(false), queue.WithKey(key))
	uri := r.RequestURI
	if uri == "" { // a request made by hand rather than read by net/http
		uri = r.URL.RequestURI()
	}
	c.req = newRequestInfo(uri, s.opts.keptHeader(r.Header))
	if a := hw.nc.RemoteAddr(); r.RemoteAddr != "" && (a == nil || a.String() != r.RemoteAddr) {
		// A middleware rewrote it (a proxy's client address, say): keep it. Set before
		// anything else sees the connection: read without a lock.
		if m := c.more.Load(); m != nil {
			m.remote = r.RemoteAddr
		} else {
			c.more.Store(&connMore{remote: r.RemoteAddr})
		}
	}
	if s.obs != nil { // only the Observer is told how long a connection lasted
		c.more.Load().opened = int64(time.Since(s.start))
	}
	epoch := s.ka.epoch.Load()
	c.seen.Store(epoch)
	c.heard.Store(epoch)
	return c, true
}

// authenticate runs Options.Authenticate. A panic in it goes on up to net/http (which logs
// it and drops the request), but first gives back the MaxConns slot ServeHTTP reserved.
func (s *Server) authenticate(r *http.Request) (any, error) {
	panicking := true
	defer func() {
		if panicking {
			s.releaseSlot()
		}
	}()
	a, err := s.opts.Authenticate(r)
	panicking = false
	return a, err
}

func (s *Server) reject(root context.Context, w http.ResponseWriter, r *http.Request, status int, why string) {
	s.stats.rejected.Add(1)
	if s.obs != nil {
		s.obs.Refused(root, r, status, why)
	}
	http.Error(w, http.StatusText(status), status)
}

func (s *Server) releaseSlot() {
	if s.opts.MaxConns > 0 {
		s.slots.Add(-1)
	}
}

// register adds c to the open connections, unless Shutdown has begun.
func (s *Server) register(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.addLocked(c)
	s.stats.accepted.Add(1)
	s.startKeepaliveLocked()
	return true
}

// addLocked puts c in the registry. s.mu is held.
func (s *Server) addLocked(c *Conn) {
	s.conns = append(s.conns, c)
	c.slot = int32(len(s.conns))
}

// removeLocked takes c out of the registry (if it is in it): the last connection moves
// into its place. s.mu is held.
func (s *Server) removeLocked(c *Conn) {
	i := int(c.slot) - 1
	if i < 0 || i >= len(s.conns) || s.conns[i] != c {
		return
	}
	last := len(s.conns) - 1
	s.conns[i] = s.conns[last]
	s.conns[i].slot = int32(i + 1)
	s.conns[last] = nil
	s.conns = s.conns[:last]
	c.slot = 0
	// After a crowd has left, let go of the array it needed.
	if cap(s.conns) > 1024 && len(s.conns) < cap(s.conns)/4 {
		s.conns = slices.Clone(s.conns)
	}
}

// retire runs after OnClose: the connection is gone for good. It is the one place every
// close ends, whatever path decided it, with the error OnClose got and the Observer's
// reason: the log line of an abnormal close is written here, then the Observer is told.
func (s *Server) retire(c *Conn, err error, why string) {
	s.logClose(c, err, why)
	s.mu.Lock()
	s.removeLocked(c)
	if len(s.conns) == 0 {
		s.stopKeepaliveLocked()
	}
	if s.obs != nil {
		// Shutdown returns only after the Observer heard of the last close, also when it
		// starts while this one is under way: a program that flushes its telemetry after
		// Shutdown has the close's span and metrics.
		s.retiring++
	}
	idle := s.idleLocked()
	s.mu.Unlock()
	s.releaseSlot()
	if s.obs != nil {
		ctx := c.end()
		if ctx == nil {
			ctx = c.root()
		}
		s.obs.Closed(ctx, c, time.Since(s.start)-time.Duration(c.openedAt()), why, err)
		s.mu.Lock()
		s.retiring--
		idle = s.idleLocked()
		s.mu.Unlock()
	}
	if idle != nil {
		close(idle)
	}
}

// idleLocked returns the channel Shutdown waits on, for the caller to close, once no
// connection is open or retiring; nil while one is, or when no Shutdown waits. s.mu is held.
func (s *Server) idleLocked() chan struct{} {
	if len(s.conns) > 0 || s.retiring > 0 {
		return nil
	}
	idle := s.idle
	s.idle = nil
	return idle
}

func (s *Server) panicHandler(c *Conn, r any, stack []byte) {
	if h := s.opts.PanicHandler; h != nil {
		h(c, r, stack)
		return
	}
	s.logger().Error("wsserver: panic in a connection callback; the connection was closed with 1011",
		"conn", c.id, "remote", c.RemoteAddr(), "panic", fmt.Sprint(r), "stack", string(stack))
}

// Shutdown stops the server: new upgrades get 503; every connection gets what it has queued,
// then a 1001 going-away close frame; and Shutdown returns once every OnClose has run. If ctx
// ends first, the connections left are cut without a close frame, and Shutdown still waits
// for their OnClose (which follows the OnMessage calls already queued: a handler that never
// returns holds Shutdown) before it returns ctx's error: once Shutdown has returned, no
// callback of the server runs. A second Shutdown waits as the first does (or until its own
// ctx ends) and returns ErrShutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing.Swap(true) {
		return s.awaitShutdown(ctx) // unlocks s.mu
	}
	conns := slices.Clone(s.conns)
	var idle chan struct{}
	if len(s.conns) > 0 || s.retiring > 0 {
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle = s.idle
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.StatusGoingAway, "server shutting down", ErrShutdown, ReasonShutdown, true)
	}
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.abort(websocket.StatusGoingAway, ErrShutdown, ReasonShutdown)
		}
		<-idle // cut, every reader ends at once: only the handlers' queued work is left
		return fmt.Errorf("wsserver: shutdown: %w", ctx.Err())
	}
}

// awaitShutdown is a later Shutdown: it waits for the connections to be gone, or for ctx.
// It is called with s.mu held and unlocks it.
func (s *Server) awaitShutdown(ctx context.Context) error {
	var idle chan struct{}
	if len(s.conns) > 0 || s.retiring > 0 {
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle = s.idle
	}
	s.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("wsserver: shutdown: %w", ctx.Err())
		}
	}
	return ErrShutdown
}

// Room returns the room called name, creating it on first use. A room lives while it is
// used: once it has no members (and so no Broker subscription) and nothing queued for it,
// it leaves the server, and the next Room call for its name makes a new one; a *Room kept
// from before still works (see Room). ServerStats.Rooms counts the rooms alive.
func (s *Server) Room(name string) *Room {
	if r, ok := s.rooms.Load(name); ok {
		return r.(*Room)
	}
	r, loaded := s.rooms.LoadOrStore(name, newRoom(s, name))
	if !loaded {
		s.roomCount.Add(1)
	}
	return r.(*Room)
}

// activeObserver returns o, or nil when o is a queue.Inert observer that reports itself
// inert (a tracing.Observer over no-op providers): the server then pays one nil check per
// event, as with no Observer.
func activeObserver(o Observer) Observer {
	if in, ok := o.(queue.Inert); ok && in.Inert() {
		return nil
	}
	return o
}
