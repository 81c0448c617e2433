package natsbroker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every wait for an event.
const wait = 10 * time.Second

// startNATS runs a real NATS server in-process on 127.0.0.1:port (0: any free port).
func startNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(wait), "the NATS server did not start")
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

func natsPort(ns *server.Server) int { return ns.Addr().(*net.TCPAddr).Port }

// events is a broker's OnDisconnect and OnReconnect as channels.
type events struct {
	down, up chan struct{}
	log      *syncBuffer // what the broker logged
}

// syncBuffer is a log destination tests read.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func connect(t *testing.T, url string) (*Broker, *events) {
	t.Helper()
	ev := &events{down: make(chan struct{}, 16), up: make(chan struct{}, 16), log: &syncBuffer{}}
	b, err := Connect(url, Options{
		Logger:       slog.New(slog.NewTextHandler(io.MultiWriter(ev.log, t.Output()), nil)),
		OnDisconnect: func(error) { ev.down <- struct{}{} },
		OnReconnect:  func() { ev.up <- struct{}{} },
	}, nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b, ev
}

func flush(t *testing.T, bs ...*Broker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, b := range bs {
		require.NoError(t, b.Flush(ctx))
	}
}

// node is one wsserver process: every connection joins "lobby"; a message "leave" leaves it
// (the Conn is then reported on left), anything else is broadcast to the room.
type node struct {
	srv    *wsserver.Server
	url    string
	broker *Broker
	joined chan *wsserver.Conn
	left   chan *wsserver.Conn
}

func startNode(t *testing.T, b *Broker) *node {
	t.Helper()
	n := &node{broker: b, joined: make(chan *wsserver.Conn, 16), left: make(chan *wsserver.Conn, 16)}
	n.srv = wsserver.New(wsserver.HandlerFuncs{
		Open: func(c *wsserver.Conn) {
			n.srv.Room("lobby").Join(c)
			n.joined <- c
		},
		Message: func(c *wsserver.Conn, m wsserver.Message) {
			if string(m.Data) == "leave" {
				n.srv.Room("lobby").Leave(c)
				n.left <- c
				return
			}
			n.srv.Room("lobby").Broadcast(m)
		},
	}, wsserver.Options{Broker: b})
	hs := httptest.NewServer(n.srv)
	n.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, n.srv.Shutdown(ctx))
		hs.Close()
	})
	return n
}

// client dials n and waits until it is in the room.
func (n *node) client(t *testing.T) (*websocket.Conn, *wsserver.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, n.url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CloseNow() })
	sc := testutil.Recv(t, n.joined, "a client to join")
	n.srv.Room("lobby").Len() // the Join (and so the room's Subscribe) took effect
	return c, sc
}

func send(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(s)))
}

func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, b, err := c.Read(ctx)
	require.NoError(t, err)
	return string(b)
}

func TestFrameRoundTripAndBadFrames(t *testing.T) {
	for _, m := range []wsserver.Message{wsserver.Text("hello"), wsserver.Binary([]byte{0, 1, 2}), wsserver.Text("")} {
		frame := appendFrame(nil, "node-1", "room/ü", nil, m)
		node, room, fields, got, err := parseFrame(frame)
		require.NoError(t, err)
		require.Equal(t, "node-1", node)
		require.Equal(t, "room/ü", room)
		require.Equal(t, m.Type, got.Type)
		require.Equal(t, string(m.Data), string(got.Data))
		require.Empty(t, fields)
		require.EqualValues(t, frameV1, frame[0], "no context: the header of the nodes before version 2")

		frame = appendFrame(nil, "node-1", "room/ü", []string{"traceparent", "00-x-y-01", "k", ""}, m)
		require.EqualValues(t, frameV2, frame[0])
		node, room, fields, got, err = parseFrame(frame)
		require.NoError(t, err)
		require.Equal(t, "node-1", node)
		require.Equal(t, "room/ü", room)
		require.Equal(t, string(m.Data), string(got.Data))
		var kv []string
		require.NoError(t, eachField(fields, func(k, v []byte) { kv = append(kv, string(k), string(v)) }))
		require.Equal(t, []string{"traceparent", "00-x-y-01", "k", ""}, kv)
	}
	good := appendFrame(nil, "n", "r", nil, wsserver.Text("x"))
	for name, bad := range map[string][]byte{
		"empty":         nil,
		"version":       append([]byte{9}, good[1:]...),
		"type":          append([]byte{good[0], 7}, good[2:]...),
		"short node":    {frameVersion, 1, 200, 'a'},
		"short room":    {frameVersion, 1, 1, 'n', 50, 'r'},
		"no room len":   {frameVersion, 1, 1, 'n'},
		"huge room len": append([]byte{frameVersion, 1, 0}, 0xff, 0xff, 0xff, 0x7f),
		"no ctx len":    {frameV2, 1, 1, 'n', 1, 'r'},
		"short ctx":     {frameV2, 1, 1, 'n', 1, 'r', 9, 1, 'k'},
		"bad field":     {frameV2, 1, 1, 'n', 1, 'r', 3, 1, 'k', 5},
	} {
		_, _, _, _, err := parseFrame(bad)
		require.Error(t, err, name)
	}
}

func TestConnectRejectsBadOptions(t *testing.T) {
	_, err := Connect("nats://127.0.0.1:1", Options{Prefix: "a..b"})
	require.ErrorContains(t, err, "prefix")
	_, err = Connect("nats://127.0.0.1:1", Options{Prefix: "rooms.>"})
	require.ErrorContains(t, err, "prefix")
	_, err = Connect("nats://127.0.0.1:1", Options{Node: strings.Repeat("n", 256)})
	require.ErrorContains(t, err, "Node")
	// Nothing listens on port 1: a clear error, not a hang or a crash.
	_, err = Connect("nats://127.0.0.1:1", Options{}, nats.Timeout(time.Second))
	require.ErrorContains(t, err, "connect to nats://127.0.0.1:1")
}

// Two wsserver nodes on different ports share a room through one NATS server: a broadcast
// on one reaches the clients of both, in order, once; a member that leaves on B stops
// getting them; when B has no member left it unsubscribes.
func TestTwoNodesShareARoom(t *testing.T) {
	ns := startNATS(t, 0)
	ba, _ := connect(t, ns.ClientURL())
	bb, _ := connect(t, ns.ClientURL())
	require.NotEqual(t, ba.Node(), bb.Node())
	a, b := startNode(t, ba), startNode(t, bb)
	require.NotEqual(t, a.url, b.url)
	ann, _ := a.client(t)
	bob, _ := b.client(t)
	cat, _ := b.client(t)
	flush(t, ba, bb) // both nodes' subscriptions are on the server

	const n = 50
	for i := range n {
		send(t, ann, "m"+strconv.Itoa(i))
	}
	for _, c := range []*websocket.Conn{ann, bob, cat} {
		for i := range n {
			require.Equal(t, "m"+strconv.Itoa(i), read(t, c), "in order, and once")
		}
	}
	send(t, bob, "from b")
	for _, c := range []*websocket.Conn{ann, bob, cat} {
		require.Equal(t, "from b", read(t, c), "the next message for everyone: ann's came once")
	}
	stA := a.srv.Stats()
	require.Equal(t, uint64(n), stA.BrokerPublished)
	require.Equal(t, uint64(1), stA.BrokerReceived)
	require.NoError(t, stA.BrokerErr)
	require.Equal(t, uint64(n), ba.Stats().Published)
	require.Equal(t, uint64(n), bb.Stats().Received)

	// cat leaves on B: bob still gets what ann says, cat does not.
	send(t, cat, "leave")
	catConn := testutil.Recv(t, b.left, "cat to leave")
	require.Equal(t, 1, b.srv.Room("lobby").Len())
	send(t, ann, "after cat left")
	require.Equal(t, "after cat left", read(t, ann))
	require.Equal(t, "after cat left", read(t, bob))
	b.srv.Room("lobby").Queue().Sync(func() {}) // B's fan-out of it is over
	require.NoError(t, catConn.SendText("marker"))
	require.Equal(t, "marker", read(t, cat), "cat got nothing from the room after leaving")

	// bob leaves too: B has nobody in the room and unsubscribes.
	before := ns.NumSubscriptions()
	send(t, bob, "leave")
	testutil.Recv(t, b.left, "bob to leave")
	require.Zero(t, b.srv.Room("lobby").Len())
	flush(t, bb)
	require.Zero(t, bb.Stats().Subscriptions)
	require.Equal(t, before-1, ns.NumSubscriptions(), "B's subscription is gone from the server")
}

// The NATS server stops mid-run: each node keeps serving its own members and counts what it
// could not publish as dropped; Stats shows the error. When the server is back, the nodes
// reconnect and share the room again.
func TestNodesSurviveTheNATSServerGoingAway(t *testing.T) {
	ns := startNATS(t, 0)
	port := natsPort(ns)
	ba, eva := connect(t, ns.ClientURL())
	bb, evb := connect(t, ns.ClientURL())
	a, b := startNode(t, ba), startNode(t, bb)
	ann, _ := a.client(t)
	bob, _ := b.client(t)
	flush(t, ba, bb)
	send(t, ann, "before")
	require.Equal(t, "before", read(t, ann))
	require.Equal(t, "before", read(t, bob))

	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.Recv(t, eva.down, "A to notice NATS is gone")
	testutil.Recv(t, evb.down, "B to notice NATS is gone")

	send(t, ann, "local 1")
	send(t, ann, "local 2")
	require.Equal(t, "local 1", read(t, ann), "A's own members are still served")
	require.Equal(t, "local 2", read(t, ann))
	st := a.srv.Stats()
	require.Equal(t, uint64(2), st.BrokerDropped, "the publications NATS could not take are counted")
	require.ErrorIs(t, st.BrokerErr, ErrDisconnected)
	require.Equal(t, uint64(2), ba.Stats().Dropped)
	require.False(t, ba.Stats().Connected)
	send(t, bob, "local b")
	require.Equal(t, "local b", read(t, bob))

	startNATS(t, port)
	testutil.Recv(t, eva.up, "A to reconnect")
	testutil.Recv(t, evb.up, "B to reconnect")
	flush(t, ba, bb)
	send(t, ann, "after")
	require.Equal(t, "after", read(t, ann))
	require.Equal(t, "after", read(t, bob), "cross-node delivery resumed; the dropped ones never came")
	send(t, bob, "after b")
	require.Equal(t, "after b", read(t, bob))
	require.Equal(t, "after b", read(t, ann))
	require.NoError(t, a.srv.Stats().BrokerErr)
	require.Equal(t, uint64(1), ba.Stats().Reconnects)
	require.Equal(t, uint64(2), a.srv.Stats().BrokerDropped)
	require.Contains(t, eva.log.String(), "disconnected from NATS")
	require.Contains(t, eva.log.String(), "reconnected to NATS")
}

// A node's own publications do not come back to it, even on a connection without NoEcho
// (the origin in the header is checked); a message on a room subject that is not a room
// message is counted and ignored.
func TestOwnAndForeignMessagesAreIgnored(t *testing.T) {
	ns := startNATS(t, 0)
	b, _ := connect(t, ns.ClientURL())
	got := make(chan wsserver.Message, 4)
	require.NoError(t, b.Subscribe("r", func(m wsserver.Message) { got <- m }))
	flush(t, b)

	raw, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer raw.Close()
	subj := b.subject("r")
	require.NoError(t, raw.Publish(subj, appendFrame(nil, b.Node(), "r", nil, wsserver.Text("mine"))))
	require.NoError(t, raw.Publish(subj, []byte("not a frame")))
	require.NoError(t, raw.Publish(subj, appendFrame(nil, "other", "not r", nil, wsserver.Text("wrong room"))))
	require.NoError(t, raw.Publish(subj, appendFrame(nil, "other", "r", nil, wsserver.Binary([]byte("theirs")))))
	m := testutil.Recv(t, got, "the other node's message")
	require.Equal(t, "theirs", string(m.Data))
	require.Equal(t, websocket.MessageBinary, m.Type)
	require.Equal(t, uint64(2), b.Stats().Malformed)
	require.Equal(t, uint64(1), b.Stats().Received)

	require.NoError(t, b.Unsubscribe("r"))
	require.NoError(t, b.Unsubscribe("r"), "twice does nothing")
	require.ErrorIs(t, b.Publish(strings.Repeat("x", MaxRoomName+1), wsserver.Text("x")), ErrRoomName)
	require.Error(t, b.Subscribe("r", nil))
}

func TestClosedBrokerRefuses(t *testing.T) {
	ns := startNATS(t, 0)
	b, err := Connect(ns.ClientURL(), Options{Node: "n1", Prefix: "test.rooms"})
	require.NoError(t, err)
	require.Equal(t, "n1", b.Node())
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "twice is fine")
	require.ErrorIs(t, b.Err(), ErrClosed)
	require.True(t, errors.Is(b.Publish("r", wsserver.Text("x")), ErrClosed))
	require.Error(t, b.Subscribe("r", func(wsserver.Message) {}))
	require.Equal(t, uint64(1), b.Stats().Dropped)
}
