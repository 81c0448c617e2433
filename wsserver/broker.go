package wsserver

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
)

// A Broker carries room messages between server processes ("nodes") so that a Room spans
// every node that has it: a Broadcast on one node reaches the room's members on all of them.
// Options.Broker sets it; without one (the default) rooms are in-process, as if every node
// were alone. The natsbroker package implements it over NATS; LocalBus links the servers of
// one process.
//
// A Server uses its Broker like this:
//   - a Room calls Subscribe when its node gains its first member and Unsubscribe when it
//     loses its last, so a node hears only about rooms it has members in;
//   - every Broadcast, whether or not the node has members, calls Publish once, from the
//     room's serial queue: a room's publications leave a node in the order they were made;
//   - deliver is called for every message another node published to the room, in the order
//     that node published them; the room fans it out to its members here (and does not
//     publish it again).
//
// A Broker must be safe for concurrent use, must not hand a node its own publications back
// (the room has already served its own members), and must not block for long in Publish,
// Subscribe or Unsubscribe: they run on the room's queue. deliver does not block. Names are
// opaque strings: besides the server's rooms, an application may use the same Broker for
// names of its own (as examples/chat does for presence), as long as they do not collide.
type Broker interface {
	// Publish sends m to the other nodes subscribed to room. An error means it did not leave
	// this node (the broker is disconnected, say); the server counts it as dropped.
	Publish(room string, m Message) error
	// Subscribe starts calling deliver with the messages other nodes publish to room.
	// Subscribing a name twice replaces the first deliver.
	Subscribe(room string, deliver func(Message)) error
	// Unsubscribe stops the deliveries for room; after it returns deliver is not called
	// again for that subscription. Unsubscribing a name not subscribed does nothing.
	Unsubscribe(room string) error
	// Err reports the broker's health: nil while it can reach the other nodes, the reason
	// otherwise (it is disconnected and reconnecting, or closed). Stats shows it.
	Err() error
}

// A ContextBroker is a Broker that carries the publisher's context with each message, so
// that a message's trace continues on every node its room reaches. A Server with an Observer
// uses these methods instead of Publish and Subscribe when its Broker has them; a Server
// without one never does, so an untraced server pays nothing for them. The Broker does the
// propagation (the natsbroker package carries W3C trace context through the OpenTelemetry
// propagator); this package only hands the contexts over.
type ContextBroker interface {
	Broker
	// PublishContext is Publish with the publisher's context: the context of the room's
	// block that publishes m (its trace, for a tracing Observer). The broker carries what it
	// can of it (its propagator's fields), nothing when there is nothing to carry.
	PublishContext(ctx context.Context, room string, m Message) error
	// SubscribeContext is Subscribe whose deliver also gets the context the publisher's
	// broker carried (the publisher's trace context; context.Background when none came with
	// m) and where m came from.
	SubscribeContext(room string, deliver func(ctx context.Context, m Message, from Remote)) error
}

// Remote says where a message another node published came from, as a ContextBroker
// delivers it.
type Remote struct {
	Node   string // the node that published it (natsbroker: its Options.Node)
	System string // the broker's messaging system, for telemetry: "nats" for natsbroker
}

// A BrokerObserver is told about the failures of a Server's Broker. An Observer that also
// implements it (the tracing package's, say) gets these events; they are logged either way.
type BrokerObserver interface {
	// BrokerFailed is called when Publish, Subscribe or Unsubscribe (op) failed for room.
	BrokerFailed(room, op string, err error)
}

// brokerState is what a Server keeps about its Broker: counters for Stats and whether the
// last operation failed (so that a failing broker is logged once, not once per message).
type brokerState struct {
	failing atomic.Bool // read without mu by every successful publication; written under mu
	mu      sync.Mutex
	dropped uint64 // publications refused since the broker started failing
}

// brokerFailed records err for room and op: counted in Stats (op "publish" is a dropped
// message), told to a BrokerObserver, and logged when the broker starts failing.
func (s *Server) brokerFailed(room, op string, err error) {
	if op == "publish" {
		s.stats.brokerDropped.Add(1)
	} else {
		s.stats.brokerErrors.Add(1)
	}
	if bo, ok := s.obs.(BrokerObserver); ok {
		bo.BrokerFailed(room, op, err)
	}
	b := &s.bstate
	b.mu.Lock()
	first := !b.failing.Load()
	b.failing.Store(true)
	if op == "publish" {
		b.dropped++
	}
	b.mu.Unlock()
	if first {
		s.logger().Warn("wsserver: broker failed; rooms keep serving this node's members, and publications are dropped until it recovers",
			"room", room, "op", op, "err", err)
	} else if op != "publish" {
		s.logger().Warn("wsserver: broker failed", "room", room, "op", op, "err", err)
	}
}

// brokerOK records that an operation succeeded, logging the recovery of a failing broker.
func (s *Server) brokerOK() {
	b := &s.bstate
	if !b.failing.Load() {
		return // the common case: one atomic load per publication
	}
	b.mu.Lock()
	if !b.failing.Load() {
		b.mu.Unlock()
		return
	}
	b.failing.Store(false)
	dropped := b.dropped
	b.dropped = 0
	b.mu.Unlock()
	s.logger().Info("wsserver: broker recovered", "dropped_while_failing", dropped)
}

// ErrBusClosed is returned by a LocalBus broker used after Close.
var ErrBusClosed = errors.New("wsserver: local bus broker closed")

// A LocalBus links the Servers of one process: each gets its own Broker from Broker, and a
// room then spans all of them, as NATS makes it span processes. It serves tests, examples,
// and a process that runs several Servers (on several ports, say). Delivery is synchronous
// and in order.
type LocalBus struct {
	mu   sync.Mutex
	subs map[string]map[*LocalBroker]func(Message)
}

// NewLocalBus returns an empty bus.
func NewLocalBus() *LocalBus {
	return &LocalBus{subs: make(map[string]map[*LocalBroker]func(Message))}
}

// Broker returns a new node's Broker on the bus: pass it as one Server's Options.Broker.
func (b *LocalBus) Broker() *LocalBroker {
	return &LocalBroker{bus: b}
}

// Subscribers returns how many nodes are subscribed to room.
func (b *LocalBus) Subscribers(room string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs[room])
}

// A LocalBroker is one node's Broker on a LocalBus.
type LocalBroker struct {
	bus    *LocalBus
	closed bool // under bus.mu
}

// Publish hands m to every other node subscribed to room, before it returns. m.Data is
// shared with them.
func (l *LocalBroker) Publish(room string, m Message) error {
	bus := l.bus
	bus.mu.Lock()
	if l.closed {
		bus.mu.Unlock()
		return ErrBusClosed
	}
	var deliver []func(Message)
	for n, fn := range bus.subs[room] {
		if n != l {
			deliver = append(deliver, fn)
		}
	}
	bus.mu.Unlock()
	for _, fn := range deliver {
		fn(m)
	}
	return nil
}

// Subscribe starts calling deliver with what the other nodes publish to room.
func (l *LocalBroker) Subscribe(room string, deliver func(Message)) error {
	if deliver == nil {
		return errors.New("wsserver: Subscribe with a nil deliver")
	}
	bus := l.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if l.closed {
		return ErrBusClosed
	}
	m := bus.subs[room]
	if m == nil {
		m = make(map[*LocalBroker]func(Message))
		bus.subs[room] = m
	}
	m[l] = deliver
	return nil
}

// Unsubscribe stops the deliveries for room.
func (l *LocalBroker) Unsubscribe(room string) error {
	bus := l.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if m := bus.subs[room]; m != nil {
		delete(m, l)
		if len(m) == 0 {
			delete(bus.subs, room)
		}
	}
	return nil
}

// Err returns ErrBusClosed after Close, nil before.
func (l *LocalBroker) Err() error {
	l.bus.mu.Lock()
	defer l.bus.mu.Unlock()
	if l.closed {
		return ErrBusClosed
	}
	return nil
}

// Close takes the node off the bus: its subscriptions end and its Publish fails from now on
// (a node that went away).
func (l *LocalBroker) Close() error {
	bus := l.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	l.closed = true
	for room, m := range bus.subs {
		delete(m, l)
		if len(m) == 0 {
			delete(bus.subs, room)
		}
	}
	return nil
}

// Rooms returns the names this node is subscribed to, sorted.
func (l *LocalBroker) Rooms() []string {
	bus := l.bus
	bus.mu.Lock()
	defer bus.mu.Unlock()
	var names []string
	for room, m := range bus.subs {
		if _, ok := m[l]; ok {
			names = append(names, room)
		}
	}
	slices.Sort(names)
	return names
}
