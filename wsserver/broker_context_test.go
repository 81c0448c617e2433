package wsserver

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// ctxBus is a LocalBus whose brokers are ContextBrokers: a publication's context's "span"
// reaches the other nodes' deliver as "carried:<span>", as natsbroker carries a trace
// context. It records which Broker methods each node used.
type ctxBus struct {
	*LocalBus
	pub     sync.Mutex // one publication at a time: carried and origin are its
	carried string
	origin  string
	mu      sync.Mutex
	calls   []string
}

type ctxBroker struct {
	*LocalBroker
	bus  *ctxBus
	name string
}

func (b *ctxBus) node(name string) *ctxBroker {
	return &ctxBroker{LocalBroker: b.Broker(), bus: b, name: name}
}

func (b *ctxBus) call(s string) {
	b.mu.Lock()
	b.calls = append(b.calls, s)
	b.mu.Unlock()
}

func (b *ctxBus) called() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.calls...)
}

func (n *ctxBroker) Publish(room string, m Message) error {
	n.bus.call(n.name + " Publish")
	n.bus.pub.Lock()
	defer n.bus.pub.Unlock()
	n.bus.carried, n.bus.origin = "", n.name
	return n.LocalBroker.Publish(room, m)
}

func (n *ctxBroker) Subscribe(room string, deliver func(Message)) error {
	n.bus.call(n.name + " Subscribe")
	return n.LocalBroker.Subscribe(room, deliver)
}

func (n *ctxBroker) PublishContext(ctx context.Context, room string, m Message) error {
	n.bus.call(n.name + " PublishContext in " + span(ctx))
	n.bus.pub.Lock()
	defer n.bus.pub.Unlock()
	n.bus.carried, n.bus.origin = span(ctx), n.name
	return n.LocalBroker.Publish(room, m)
}

func (n *ctxBroker) SubscribeContext(room string, deliver func(context.Context, Message, Remote)) error {
	n.bus.call(n.name + " SubscribeContext")
	return n.LocalBroker.Subscribe(room, func(m Message) {
		// Publish runs the deliveries before it returns, under n.bus.pub.
		ctx := context.WithValue(context.Background(), ctxKey("span"), "carried:"+n.bus.carried)
		deliver(ctx, m, Remote{Node: n.bus.origin, System: "test"})
	})
}

// remoteRecorder is a recorder that is also a RemoteObserver.
type remoteRecorder struct{ recorder }

func (r *remoteRecorder) RemoteReceived(ctx context.Context, room string, m Message, from Remote) context.Context {
	r.add("remote " + room + " from " + from.Node + " via " + from.System + " in " + span(ctx))
	return context.WithValue(ctx, ctxKey("span"), "remote:"+string(m.Data))
}

func (r *remoteRecorder) RemoteDelivered(ctx context.Context, room string, m Message) {
	r.add("delivered " + span(ctx))
}

// A Server without an Observer uses Publish and Subscribe even on a ContextBroker (nothing
// is carried, nothing paid); one with an Observer publishes with the publish's context, and
// the other node's room serves the message under what its RemoteObserver made of the
// context that came with it.
func TestContextBrokerCarriesTheObserversContext(t *testing.T) {
	t.Run("no observer", func(t *testing.T) {
		bus := &ctxBus{LocalBus: NewLocalBus()}
		a, b := New(HandlerFuncs{}, Options{Broker: bus.node("a")}), New(HandlerFuncs{}, Options{Broker: bus.node("b")})
		b1 := fakeConn(b, 1)
		b.Room("r").Join(b1)
		b.Room("r").Len()
		a.Room("r").Broadcast(Text("x"))
		a.Room("r").Queue().Sync(func() {})
		b.Room("r").Queue().Sync(func() {})
		require.Equal(t, []string{"x"}, queued(b1))
		require.Equal(t, []string{"b Subscribe", "a Publish"}, bus.called())
	})
	t.Run("observer", func(t *testing.T) {
		bus := &ctxBus{LocalBus: NewLocalBus()}
		ra, rb := &remoteRecorder{}, &remoteRecorder{}
		a := New(HandlerFuncs{}, Options{Broker: bus.node("a"), Observer: ra})
		b := New(HandlerFuncs{}, Options{Broker: bus.node("b"), Observer: rb})
		b1 := fakeConn(b, 1)
		b.Room("r").Join(b1)
		b.Room("r").Len()
		a.Room("r").Broadcast(Text("x"))
		a.Room("r").Queue().Sync(func() {})
		b.Room("r").Queue().Sync(func() {})
		require.Equal(t, []string{"x"}, queued(b1))
		require.Equal(t, []string{"b SubscribeContext", "a PublishContext in bcast:x"}, bus.called(),
			"the publication carries the publish's context (the Observer's Broadcast)")
		rb.mu.Lock()
		defer rb.mu.Unlock()
		require.Equal(t, "remote r from a via test in carried:bcast:x", rb.events[0])
		require.ElementsMatch(t, []string{ // the hand-off's end and the room's block may come in either order
			"remote r from a via test in carried:bcast:x",
			"delivered remote:x",
			"broadcast from remote:x",
		}, rb.events, "B's room block runs under the RemoteObserver's context")
		require.Equal(t, []string{"bcast:x"}, rb.sentFrom, "B's send is under B's publish")
	})
}
