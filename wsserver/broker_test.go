package wsserver

import (
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// queued returns what c has in its outbound buffer (a fakeConn never writes).
func queued(c *Conn) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.out {
		out = append(out, string(e.m.Data))
	}
	return out
}

func TestRoomSubscribesWithItsFirstMemberAndUnsubscribesWithItsLast(t *testing.T) {
	bus := NewLocalBus()
	node := bus.Broker()
	s := New(HandlerFuncs{}, Options{Broker: node})
	room := s.Room("r")
	a, b := fakeConn(s, 1), fakeConn(s, 2)

	require.Zero(t, room.Len())
	require.Zero(t, bus.Subscribers("r"), "no member, no subscription")
	room.Join(a)
	require.Equal(t, 1, room.Len())
	require.Equal(t, []string{"r"}, node.Rooms())
	room.Join(b)
	room.Join(a) // twice: still one member, one subscription
	require.Equal(t, 2, room.Len())
	require.Equal(t, 1, bus.Subscribers("r"))
	room.Leave(a)
	require.Equal(t, 1, room.Len())
	require.Equal(t, 1, bus.Subscribers("r"), "one member left: still subscribed")
	room.Leave(b)
	require.Zero(t, room.Len())
	require.Zero(t, bus.Subscribers("r"), "the last member left: unsubscribed")
	require.Empty(t, node.Rooms())
	room.Join(b)
	require.Equal(t, 1, room.Len())
	require.Equal(t, 1, bus.Subscribers("r"), "a new first member subscribes again")
}

// Two nodes on one bus: a broadcast on either reaches the members of both, once, in the
// order it was made; a member that leaves on one node gets nothing more.
func TestBroadcastSpansNodesInOrderAndOnce(t *testing.T) {
	bus := NewLocalBus()
	nodeA, nodeB := New(HandlerFuncs{}, Options{Broker: bus.Broker()}), New(HandlerFuncs{}, Options{Broker: bus.Broker()})
	ra, rb := nodeA.Room("r"), nodeB.Room("r")
	a1 := fakeConn(nodeA, 1)
	b1, b2 := fakeConn(nodeB, 1), fakeConn(nodeB, 2)
	ra.Join(a1)
	rb.Join(b1)
	rb.Join(b2)
	require.Equal(t, 2, rb.Len())

	const n = 100
	var want []string
	for i := range n {
		want = append(want, "a"+strconv.Itoa(i))
		ra.Broadcast(Text(want[i]))
	}
	ra.Queue().Sync(func() {}) // A published them all (the bus queued them on B's room)
	rb.Queue().Sync(func() {}) // B served them
	require.Equal(t, want, queued(a1), "the publishing node serves its own members once")
	require.Equal(t, want, queued(b1))
	require.Equal(t, want, queued(b2))

	rb.Broadcast(Text("from b"))
	rb.Queue().Sync(func() {})
	ra.Queue().Sync(func() {})
	require.Equal(t, append(want, "from b"), queued(a1))
	require.Equal(t, append(want, "from b"), queued(b1))

	rb.Leave(b2)
	ra.Broadcast(Text("after"))
	ra.Queue().Sync(func() {})
	rb.Queue().Sync(func() {})
	require.Equal(t, "after", queued(b1)[n+1])
	require.Len(t, queued(b2), n+1, "b2 left: nothing more for it")

	stA, stB := nodeA.Stats(), nodeB.Stats()
	require.Equal(t, uint64(n+1), stA.BrokerPublished)
	require.Equal(t, uint64(1), stA.BrokerReceived)
	require.Equal(t, uint64(1), stB.BrokerPublished)
	require.Equal(t, uint64(n+1), stB.BrokerReceived)
	require.NoError(t, stA.BrokerErr)
	require.Zero(t, stA.BrokerDropped)

	// A room with no member on this node still publishes: the other node's members get it.
	// (The room on A has no member, so it leaves A's registry after each publication: each
	// Broadcast is waited for on the queue of the room that took it.)
	empty := nodeA.Room("empty-here")
	empty.Broadcast(Text("x"))
	empty.Queue().Sync(func() {}) // x is published before B subscribes
	rc := nodeB.Room("empty-here")
	b3 := fakeConn(nodeB, 3)
	rc.Join(b3)
	rc.Len()
	empty = nodeA.Room("empty-here")
	empty.Broadcast(Text("y"))
	empty.Queue().Sync(func() {})
	rc.Queue().Sync(func() {})
	require.Equal(t, []string{"y"}, queued(b3), "x went out before B subscribed; y after")
}

// brokerRecorder is a recorder that also hears about broker failures.
type brokerRecorder struct {
	*recorder
	failed chan string
}

func (r *brokerRecorder) BrokerFailed(room, op string, err error) { r.failed <- op + " " + room }

// A broker that fails: local members are still served, the refused publications are
// counted as dropped, and Stats and the Observer show the error.
func TestBrokerFailureKeepsTheRoomLocalAndCountsDrops(t *testing.T) {
	bus := NewLocalBus()
	brokerA, brokerB := bus.Broker(), bus.Broker()
	obs := &brokerRecorder{recorder: &recorder{closed: make(chan string, 8)}, failed: make(chan string, 8)}
	nodeA := New(HandlerFuncs{}, Options{Broker: brokerA, Observer: obs})
	nodeB := New(HandlerFuncs{}, Options{Broker: brokerB})
	a1, b1 := fakeConn(nodeA, 1), fakeConn(nodeB, 1)
	nodeA.Room("r").Join(a1)
	nodeB.Room("r").Join(b1)
	// Len waits for each room's queue: both subscriptions are made before the broker closes
	// (a subscription still on its way when it closed failed, and the observer heard
	// "subscribe r" where the test waits for "publish r").
	nodeA.Room("r").Len()
	nodeB.Room("r").Len()

	require.NoError(t, brokerA.Close())
	nodeA.Room("r").Broadcast(Text("m1"))
	nodeA.Room("r").Broadcast(Text("m2"))
	nodeA.Room("r").Queue().Sync(func() {})
	nodeB.Room("r").Queue().Sync(func() {})
	require.Equal(t, []string{"m1", "m2"}, queued(a1), "local members are served")
	require.Empty(t, queued(b1))
	st := nodeA.Stats()
	require.Equal(t, uint64(2), st.BrokerDropped)
	require.Zero(t, st.BrokerPublished)
	require.True(t, errors.Is(st.BrokerErr, ErrBusClosed), "Stats shows the broker's error: %v", st.BrokerErr)
	require.Equal(t, "publish r", testutil.Recv(t, obs.failed, "the observer hears of the failure"))
	require.Equal(t, "publish r", testutil.Recv(t, obs.failed, "and of the second one"))

	// A subscription that fails is counted, and the next Join tries again.
	a2 := fakeConn(nodeA, 2)
	nodeA.Room("s").Join(a2)
	nodeA.Room("s").Len()
	require.Equal(t, uint64(1), nodeA.Stats().BrokerErrors)
	require.Equal(t, "subscribe s", testutil.Recv(t, obs.failed, "a failed subscribe"))
}
