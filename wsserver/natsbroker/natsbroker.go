package natsbroker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

// DefaultPrefix is the subject prefix of the rooms when Options.Prefix is empty.
const DefaultPrefix = "dispatchkit.rooms"

// MaxRoomName is the longest room name, in bytes, the broker accepts.
const MaxRoomName = 1024

var (
	// ErrDisconnected is returned by Publish while the connection to NATS is down (the
	// broker is reconnecting): the message was dropped.
	ErrDisconnected = errors.New("natsbroker: not connected to NATS")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("natsbroker: closed")
	// ErrRoomName is returned for a room name longer than MaxRoomName.
	ErrRoomName = fmt.Errorf("natsbroker: a room name is at most %d bytes", MaxRoomName)
)

// Options configures a Broker. The zero value is usable.
type Options struct {
	// Node names this node in the header of its publications; at most 255 bytes. Default: a
	// random 16-hex-digit id, new for every Broker.
	Node string
	// Prefix is the subject prefix of the rooms (NATS subject tokens separated by dots, no
	// wildcards). Nodes that share rooms use the same one. Default DefaultPrefix.
	Prefix string
	// Logger gets the connection's events (disconnected, reconnected, closed, asynchronous
	// errors). Default slog.Default().
	Logger *slog.Logger
	// OnDisconnect is called (from nats.go's callback goroutine) when the connection to NATS
	// is lost, with the reason.
	OnDisconnect func(err error)
	// OnReconnect is called when the connection is back and the subscriptions are restored
	// on the server (a node may then re-announce state the others may have expired).
	OnReconnect func()
	// Propagator carries the publisher's context (its W3C trace context, say) in the header of
	// each publication, for a wsserver.Server with an Observer (which publishes through
	// PublishContext), and extracts it on the other nodes. Default: the program's global
	// propagator (otel.GetTextMapPropagator) at each publication, which carries nothing until
	// the program installs one (otelsetup.Setup installs W3C trace context and baggage). A
	// publication with nothing to carry has the header of the nodes before trace
	// propagation (version 1); one with a context needs every node to read version 2.
	Propagator propagation.TextMapPropagator
}

// A Broker is a wsserver.Broker on one NATS connection. It is safe for concurrent use.
type Broker struct {
	nc     *nats.Conn
	node   string
	prefix string
	log    *slog.Logger
	opts   Options
	closed chan struct{} // closed by nats.go's ClosedHandler

	mu   sync.Mutex
	subs map[string]*subscription

	published, received, dropped       atomic.Uint64
	malformed, disconnects, reconnects atomic.Uint64
	newer                              atomic.Uint64 // frames of a newer version
	slowDropped                        atomic.Uint64 // from subscriptions that have ended
	lastErr                            atomic.Pointer[error]
	closing                            atomic.Bool
}

// subscription is one room's NATS subscription. mu makes Unsubscribe wait for a delivery in
// progress, so that none happens after it returns.
type subscription struct {
	mu      sync.Mutex
	active  bool
	deliver func(wsserver.Message)
	// withCtx replaces deliver for SubscribeContext.
	withCtx func(context.Context, wsserver.Message, wsserver.Remote)
	sub     *nats.Subscription
}

var _ wsserver.ContextBroker = (*Broker)(nil)

// Connect connects to the NATS server(s) at url (comma-separated for several) and returns a
// Broker to pass as wsserver.Options.Broker. natsOpts are applied after the broker's
// defaults (MaxReconnects(-1): reconnect forever) and before what it needs (NoEcho, no
// reconnect buffer, its connection handlers), so they may set credentials, TLS, timeouts or
// the reconnect wait, but not those. It fails if no server can be reached now.
func Connect(url string, o Options, natsOpts ...nats.Option) (*Broker, error) {
	b := &Broker{
		node:   o.Node,
		prefix: o.Prefix,
		log:    o.Logger,
		opts:   o,
		closed: make(chan struct{}),
		subs:   make(map[string]*subscription),
	}
	if b.node == "" {
		var id [8]byte
		_, _ = rand.Read(id[:])
		b.node = hex.EncodeToString(id[:])
	}
	if len(b.node) > 255 {
		return nil, errors.New("natsbroker: Options.Node is at most 255 bytes")
	}
	if b.prefix == "" {
		b.prefix = DefaultPrefix
	}
	if err := checkPrefix(b.prefix); err != nil {
		return nil, err
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	all := []nats.Option{nats.MaxReconnects(-1), nats.Name("dispatchkit node " + b.node)}
	all = append(all, natsOpts...)
	all = append(all,
		nats.NoEcho(),
		nats.ReconnectBufSize(-1), // refuse, and count, what is published while disconnected
		nats.DisconnectErrHandler(b.onDisconnect),
		nats.ReconnectHandler(b.onReconnect),
		nats.ClosedHandler(func(*nats.Conn) { close(b.closed) }),
		nats.ErrorHandler(b.onAsyncError),
	)
	nc, err := nats.Connect(url, all...)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: connect to %s: %w", url, err)
	}
	b.nc = nc
	b.log.Info("natsbroker: connected", "node", b.node, "server", nc.ConnectedUrlRedacted())
	return b, nil
}

func checkPrefix(p string) error {
	for _, tok := range strings.Split(p, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return fmt.Errorf("natsbroker: prefix %q is not a NATS subject (dot-separated tokens, no spaces or wildcards)", p)
		}
	}
	return nil
}

// Node returns this node's name, as its publications carry it.
func (b *Broker) Node() string { return b.node }

// Conn returns the broker's NATS connection (for its statistics, say). Do not close it:
// Close the Broker.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// subject returns the room's subject.
func (b *Broker) subject(room string) string {
	return b.prefix + "._" + base64.RawURLEncoding.EncodeToString([]byte(room))
}

// frameBuf is a publication's frame and its context's fields, reused.
type frameBuf struct {
	frame  []byte
	fields carrier
}

var framePool = sync.Pool{New: func() any { return new(frameBuf) }}

// Publish sends m to the other nodes subscribed to room. While the connection is down it
// returns ErrDisconnected (wrapped with the reason) and counts the message as dropped.
func (b *Broker) Publish(room string, m wsserver.Message) error {
	return b.publish(context.Background(), false, room, m)
}

// PublishContext is Publish carrying what the Propagator injects of ctx in the header (a
// wsserver.Server with an Observer calls it with the publish span's context), so that the
// other nodes' deliveries continue ctx's trace. With nothing to carry the frame is Publish's.
func (b *Broker) PublishContext(ctx context.Context, room string, m wsserver.Message) error {
	return b.publish(ctx, true, room, m)
}

// publish sends m; carry says whether to inject ctx's context in the header.
func (b *Broker) publish(ctx context.Context, carry bool, room string, m wsserver.Message) error {
	if len(room) > MaxRoomName {
		b.dropped.Add(1)
		return ErrRoomName
	}
	if !b.nc.IsConnected() {
		b.dropped.Add(1)
		return b.downErr()
	}
	fb := framePool.Get().(*frameBuf)
	fb.fields = fb.fields[:0]
	if carry {
		b.inject(ctx, &fb.fields)
	}
	fb.frame = appendFrame(fb.frame[:0], b.node, room, fb.fields, m)
	err := b.nc.Publish(b.subject(room), fb.frame)
	clear(fb.fields)
	framePool.Put(fb)
	if err != nil {
		b.dropped.Add(1)
		if errors.Is(err, nats.ErrReconnectBufExceeded) {
			return b.downErr()
		}
		return fmt.Errorf("natsbroker: publish to room %q: %w", room, err)
	}
	b.published.Add(1)
	return nil
}

// Subscribe starts delivering the messages other nodes publish to room. While connected it
// returns once the NATS server has the subscription (a round trip, bounded by a second), so
// that a publication made after it returns reaches this node: a wsserver Room's Len, which
// waits for the Joins before it, then also waits for the room's subscription. It succeeds
// while disconnected too: the subscription is made on the server when the connection is
// back.
func (b *Broker) Subscribe(room string, deliver func(wsserver.Message)) error {
	if deliver == nil {
		return errors.New("natsbroker: Subscribe with a nil deliver")
	}
	return b.subscribe(room, &subscription{active: true, deliver: deliver})
}

// SubscribeContext is Subscribe whose deliver also gets the context the publisher's header
// carried, extracted by the Propagator (context.Background when it carried none), and the
// publishing node (wsserver.Remote, System "nats"). A wsserver.Server with an Observer
// subscribes this way.
func (b *Broker) SubscribeContext(room string, deliver func(context.Context, wsserver.Message, wsserver.Remote)) error {
	if deliver == nil {
		return errors.New("natsbroker: SubscribeContext with a nil deliver")
	}
	return b.subscribe(room, &subscription{active: true, withCtx: deliver})
}

func (b *Broker) subscribe(room string, s *subscription) error {
	if len(room) > MaxRoomName {
		return ErrRoomName
	}
	ns, err := b.nc.Subscribe(b.subject(room), func(msg *nats.Msg) { b.handle(s, room, msg) })
	if err != nil {
		return fmt.Errorf("natsbroker: subscribe to room %q: %w", room, err)
	}
	// No limit on the messages waiting for a room's goroutine but their bytes: deliver only
	// queues them on the room, so they wait little.
	_ = ns.SetPendingLimits(-1, 256<<20)
	s.sub = ns
	b.mu.Lock()
	old := b.subs[room]
	b.subs[room] = s
	b.mu.Unlock()
	if old != nil {
		_ = b.end(old)
	}
	if b.nc.IsConnected() {
		// Not an error if it times out: the subscription stands, and is made again on
		// reconnect.
		_ = b.nc.FlushTimeout(time.Second)
	}
	return nil
}

// handle runs on the subscription's goroutine (nats.go's, one per subscription, in order).
func (b *Broker) handle(s *subscription, room string, msg *nats.Msg) {
	node, r, fields, m, err := parseFrame(msg.Data)
	if errors.Is(err, errNewer) {
		if b.newer.Add(1) == 1 {
			b.log.Error("natsbroker: dropping a room message from a newer node; this node cannot read its header, upgrade it (further ones are counted in Stats().Newer)",
				"subject", msg.Subject, "err", err)
		}
		return
	}
	if err != nil || r != room {
		if b.malformed.Add(1) == 1 {
			b.log.Warn("natsbroker: ignoring a message that is not a room message of this room",
				"subject", msg.Subject, "err", err)
		}
		return
	}
	if node == b.node {
		return // our own, served locally already (NoEcho makes this rare)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.active {
		return
	}
	b.received.Add(1)
	if s.withCtx != nil {
		s.withCtx(b.extract(fields), m, wsserver.Remote{Node: node, System: System})
		return
	}
	s.deliver(m)
}

// Unsubscribe stops the deliveries for room; none happens after it returns.
func (b *Broker) Unsubscribe(room string) error {
	b.mu.Lock()
	s := b.subs[room]
	delete(b.subs, room)
	b.mu.Unlock()
	if s == nil {
		return nil
	}
	return b.end(s)
}

func (b *Broker) end(s *subscription) error {
	s.mu.Lock()
	s.active = false
	s.mu.Unlock()
	if n, err := s.sub.Dropped(); err == nil && n > 0 {
		b.slowDropped.Add(uint64(n))
	}
	if err := s.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsbroker: unsubscribe: %w", err)
	}
	return nil
}

// Err returns nil while connected to NATS; otherwise why not (ErrDisconnected wrapping the
// reason while reconnecting, ErrClosed after Close).
func (b *Broker) Err() error {
	if b.nc.IsClosed() {
		return ErrClosed
	}
	if b.nc.IsConnected() {
		return nil
	}
	return b.downErr()
}

func (b *Broker) downErr() error {
	if b.nc.IsClosed() {
		return ErrClosed
	}
	if p := b.lastErr.Load(); p != nil && *p != nil {
		return fmt.Errorf("%w (reconnecting; last error: %v)", ErrDisconnected, *p)
	}
	return fmt.Errorf("%w (reconnecting)", ErrDisconnected)
}

// Flush waits until the NATS server has processed every Subscribe, Unsubscribe and Publish
// made before it (a round trip). After a Flush on a node that subscribed to a room, every
// publication that reaches the server reaches that node.
func (b *Broker) Flush(ctx context.Context) error {
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsbroker: flush: %w", err)
	}
	return nil
}

// Stats is a snapshot of a Broker's counters.
type Stats struct {
	Node          string
	Connected     bool
	Err           error  // as Err
	Subscriptions int    // rooms subscribed now
	Published     uint64 // publications sent to NATS
	Received      uint64 // messages from other nodes delivered to a room
	Dropped       uint64 // publications refused (disconnected), and messages for this node NATS or nats.go dropped because it was too slow
	Malformed     uint64 // messages on a room subject that were not room messages
	Newer         uint64 // room messages dropped because their header is of a newer version than this node reads
	Disconnects   uint64
	Reconnects    uint64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	n := len(b.subs)
	slow := b.slowDropped.Load()
	for _, s := range b.subs {
		if d, err := s.sub.Dropped(); err == nil {
			slow += uint64(d)
		}
	}
	b.mu.Unlock()
	return Stats{
		Node:          b.node,
		Connected:     b.nc.IsConnected(),
		Err:           b.Err(),
		Subscriptions: n,
		Published:     b.published.Load(),
		Received:      b.received.Load(),
		Dropped:       b.dropped.Load() + slow,
		Malformed:     b.malformed.Load(),
		Newer:         b.newer.Load(),
		Disconnects:   b.disconnects.Load(),
		Reconnects:    b.reconnects.Load(),
	}
}

// Close flushes what was published, closes the connection and waits (up to 5 seconds) for
// nats.go to be done with it. The Broker's subscriptions end; Publish fails from now on.
func (b *Broker) Close() error {
	if !b.closing.CompareAndSwap(false, true) {
		return nil
	}
	if b.nc.IsConnected() {
		_ = b.nc.FlushTimeout(2 * time.Second)
	}
	b.nc.Close()
	select {
	case <-b.closed:
	case <-time.After(5 * time.Second):
		return errors.New("natsbroker: close: nats.go did not report the connection closed in 5s")
	}
	return nil
}

func (b *Broker) onDisconnect(_ *nats.Conn, err error) {
	if b.closing.Load() {
		return
	}
	b.disconnects.Add(1)
	if err != nil {
		b.lastErr.Store(&err)
	}
	b.log.Warn("natsbroker: disconnected from NATS; reconnecting. Rooms serve this node's members only, and their broadcasts to other nodes are dropped meanwhile",
		"node", b.node, "err", err)
	if f := b.opts.OnDisconnect; f != nil {
		f(err)
	}
}

func (b *Broker) onReconnect(nc *nats.Conn) {
	b.reconnects.Add(1)
	b.log.Info("natsbroker: reconnected to NATS", "node", b.node, "server", nc.ConnectedUrlRedacted(),
		"dropped_so_far", b.dropped.Load())
	if f := b.opts.OnReconnect; f != nil {
		f()
	}
}

func (b *Broker) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	b.log.Warn("natsbroker: asynchronous error", "node", b.node, "subject", subject, "err", err)
}
