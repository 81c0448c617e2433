package wsserver

import (
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// The tests of the pollers' leaders (poll_linux.go, leader): a poller's goroutine runs the
// readers of its batch itself and cedes its role when a reader may block.

// onePoller makes the poller set that starts next have a single poller, so that every
// connection of the test shares it and its leader. The set starts with the process's first
// registered connection: an earlier test's connections must be gone.
func onePoller(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return registered() == 0 }, wait, time.Millisecond,
		"an earlier test's connections are still registered")
	testPollCount.Store(1)
	t.Cleanup(func() { testPollCount.Store(0) })
}

// holdLeaders keeps the watchdog from ceding any leader's role until the cleanup.
func holdLeaders(t *testing.T) {
	testLeaderHold.Store(true)
	t.Cleanup(func() { testLeaderHold.Store(false) })
}

// warm sends a message on each connection and reads its echo: each connection's first reader
// has run and armed the socket, so that its next message is read by the poller's leader.
func warm(t *testing.T, cs ...*websocket.Conn) {
	t.Helper()
	for _, c := range cs {
		write(t, c, "warm")
		_, got := read(t, c)
		require.Equal(t, "warm", got)
	}
}

// A handler run inline on the leader that waits for another connection's message: the
// watchdog cedes the poller's role, and a new leader reads the other connection. (Without
// the watchdog the leader waits in the handler and nobody collects the other connection's
// edge: the handler times out.)
//
// The handler that waits and the one it waits for need two slots of the handler queue at
// once: twoPs (under -cpu 1 the Global root is one slot wide and the second never starts).
func TestReadinessLeaderCedesToAHandlerThatWaits(t *testing.T) {
	onePoller(t)
	twoPs(t)
	handled := make(chan struct{})
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		switch string(m.Data) {
		case "wait":
			select {
			case <-handled:
			case <-time.After(wait):
				t.Error("the other connection's message never came")
			}
		case "go":
			close(handled)
		}
		_ = c.Send(m)
	}}, readiness(Options{PingInterval: -1, HandlerWidth: 2}))
	a, b := dial(t, ts.url), dial(t, ts.url)
	defer a.CloseNow()
	defer b.CloseNow()
	warm(t, a, b)
	write(t, a, "wait")
	write(t, b, "go")
	_, got := read(t, b)
	require.Equal(t, "go", got)
	_, got = read(t, a)
	require.Equal(t, "wait", got)
}

// A cede puts the readers of the batch the leader has not run on the run list: here the
// batch is [a, b] (both came while the leader ran x's handler, which the watchdog was kept
// from ceding), a's handler waits for b's message, and b is served by a runner. (With the
// rest of the batch left to the old leader, which runs it after a's handler, a's handler
// times out.) It also shows that edges that come while the leader runs a reader are not lost.
// a's handler and b's run at once: twoPs, as above.
func TestReadinessCedeHandsOnTheRestOfTheBatch(t *testing.T) {
	onePoller(t)
	twoPs(t)
	entered, release, handled := make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		var ch chan struct{}
		switch string(m.Data) {
		case "hold":
			entered <- struct{}{}
			ch = release
		case "wait":
			ch = handled
		case "go":
			close(handled)
		}
		if ch != nil {
			select {
			case <-ch:
			case <-time.After(wait):
				t.Errorf("%s: never released", m.Data)
			}
		}
		_ = c.Send(m)
	}}, readiness(Options{PingInterval: -1, HandlerWidth: 3}))
	x, a, b := dial(t, ts.url), dial(t, ts.url), dial(t, ts.url)
	defer x.CloseNow()
	defer a.CloseNow()
	defer b.CloseNow()
	warm(t, x, a, b)
	holdLeaders(t)
	write(t, x, "hold")
	testutil.Recv(t, entered, "x's handler on the leader")
	write(t, a, "wait")
	write(t, b, "go")
	testLeaderHold.Store(false)
	close(release)
	for _, c := range []struct {
		conn *websocket.Conn
		want string
	}{{x, "hold"}, {b, "go"}, {a, "wait"}} {
		_, got := read(t, c.conn)
		require.Equal(t, c.want, got)
	}
}

// A reader on the leader about to wait for the rest of a frame cedes the poller's role at
// once (pollConn.blockBegin), not after a watchdog tick: with the watchdog kept from ceding,
// another connection on the same poller is still served between the bytes of a slow frame.
// (Without the cede the leader waits for the frame and the other connection's reads time
// out.)
func TestReadinessLeaderCedesMidFrame(t *testing.T) {
	onePoller(t)
	holdLeaders(t)
	trickleBesideAnother(t, readiness(Options{PingInterval: -1}), true)
}

// The last connection closed from its own handler, run inline on the leader: stopping the
// pollers waits for each poller's role to end, and the leader's is ceded to a goroutine that
// finds the epoll fd closed (releasePollers), the watchdog kept from doing it. (Without that
// cede, stopping the pollers waits for the leader, which is the goroutine stopping them.)
func TestReadinessLastCloseOnTheLeader(t *testing.T) {
	onePoller(t)
	holdLeaders(t)
	cl := newCloses()
	ts := start(t, HandlerFuncs{
		Message: func(c *Conn, m Message) {
			if string(m.Data) == "bye" {
				_ = c.Close(websocket.StatusNormalClosure, "bye")
				return
			}
			_ = c.Send(m)
		},
		Close: cl.record,
	}, readiness(Options{PingInterval: -1}))
	c := dial(t, ts.url)
	defer c.CloseNow()
	warm(t, c)
	write(t, c, "bye")
	require.Equal(t, websocket.StatusNormalClosure, readUntilClosed(t, c))
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
	require.Eventually(t, func() bool { return registered() == 0 }, wait, time.Millisecond,
		"the connection is still registered")
}
