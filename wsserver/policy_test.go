package wsserver

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/queue"
)

func TestDropOldest(t *testing.T) {
	rec := &recorder{closed: make(chan string, 1)}
	s := New(HandlerFuncs{}, Options{SendBuffer: 3, SlowConsumer: DropOldest, Observer: rec})
	c := fakeConn(s, 1)
	for _, m := range []string{"a", "b", "c", "d", "e"} {
		require.NoError(t, c.SendText(m), "DropOldest accepts the newest")
	}
	require.Equal(t, []string{"c", "d", "e"}, queued(c))
	require.Equal(t, stateOpen, c.state.Load())
	require.Equal(t, uint64(2), s.Stats().Dropped)
	require.Equal(t, []string{"dropped slow_consumer", "dropped slow_consumer"}, rec.events)
	n, bytes := c.Outbound()
	require.Equal(t, 3, n)
	require.Equal(t, 3, bytes)

	t.Run("bytes", func(t *testing.T) {
		s := New(HandlerFuncs{}, Options{SendBufferBytes: 10, SlowConsumer: DropOldest})
		c := fakeConn(s, 1)
		for _, m := range []string{"aaaa", "bbbb", "cccc", "dddddddd"} {
			require.NoError(t, c.SendText(m))
		}
		require.Equal(t, []string{"dddddddd"}, queued(c))
		require.Equal(t, uint64(3), s.Stats().Dropped)
		require.NoError(t, c.SendText(strings.Repeat("x", 64)), "one message always fits")
		require.Equal(t, []string{strings.Repeat("x", 64)}, queued(c))
	})
}

func TestConflate(t *testing.T) {
	rec := &recorder{closed: make(chan string, 1)}
	s := New(HandlerFuncs{}, Options{SendBuffer: 3, SlowConsumer: Conflate, Observer: rec})
	c := fakeConn(s, 1)
	require.NoError(t, c.SendKeyed("EURUSD", Text("EURUSD 1.10")))
	require.NoError(t, c.SendKeyed("GBPUSD", Text("GBPUSD 1.27")))
	require.NoError(t, c.SendKeyed("EURUSD", Text("EURUSD 1.11")))
	require.NoError(t, c.SendKeyed("EURUSD", Text("EURUSD 1.12")))
	require.Equal(t, []string{"EURUSD 1.12", "GBPUSD 1.27"}, queued(c), "the latest value, in the first one's place")
	_, bytes := c.Outbound()
	require.Equal(t, 22, bytes)
	st := s.Stats()
	require.Equal(t, uint64(2), st.Conflated)
	require.Equal(t, uint64(2), st.Dropped, "a conflated message counts as dropped")
	require.Equal(t, []string{"dropped conflated", "dropped conflated"}, rec.events)

	// Unkeyed messages queue as they come; a full buffer drops the oldest.
	require.NoError(t, c.SendText("news"))
	require.NoError(t, c.SendKeyed("USDJPY", Text("USDJPY 150")))
	require.Equal(t, []string{"GBPUSD 1.27", "news", "USDJPY 150"}, queued(c))
	require.Equal(t, uint64(3), s.Stats().Dropped)

	// A broadcast conflates too.
	room := s.Room("fx")
	room.Join(c)
	room.BroadcastKeyed("GBPUSD", Text("GBPUSD 1.28"))
	room.Queue().Sync(func() {})
	require.Equal(t, []string{"GBPUSD 1.28", "news", "USDJPY 150"}, queued(c))

	t.Run("other policies ignore the key", func(t *testing.T) {
		s := New(HandlerFuncs{}, Options{SlowConsumer: DropNewest})
		c := fakeConn(s, 1)
		require.NoError(t, c.SendKeyed("k", Text("1")))
		require.NoError(t, c.SendKeyed("k", Text("2")))
		require.Equal(t, []string{"1", "2"}, queued(c))
	})
	require.Equal(t, "conflate", Conflate.String())
	require.Equal(t, "drop-oldest", DropOldest.String())
}

// OnSlow is told when a connection's buffer reaches SlowMark, once, on its queue.
func TestOnSlowMark(t *testing.T) {
	calls := make(chan bool, 4)
	s := New(HandlerFuncs{}, Options{SendBuffer: 4, SlowConsumer: DropOldest, OnSlow: func(c *Conn, slow bool) {
		calls <- slow
	}})
	c := fakeConn(s, 1)
	c.q = queue.NewSerial("test")
	require.NoError(t, c.SendText("1"))
	require.NoError(t, c.SendText("2"))
	require.False(t, c.Slow())
	require.NoError(t, c.SendText("3")) // 3 of 4: the default mark, 0.75
	require.True(t, testutil.Recv(t, calls, "OnSlow"))
	require.True(t, c.Slow())
	for range 10 {
		require.NoError(t, c.SendText("more"))
	}
	c.q.Sync(func() {})
	require.Empty(t, calls, "once per turn")
	st := s.Stats()
	require.Equal(t, uint64(1), st.TurnedSlow)
	require.Equal(t, uint64(9), st.Dropped)
}

// A client that stops reading turns slow, and fast again once it has read what was queued;
// the application hears both, on the connection's queue, and the connection stays.
func TestOnSlowRecovers(t *testing.T) {
	const burst, size = 160, 8 << 10
	slow := make(chan bool, 4)
	ts := start(t, HandlerFuncs{
		Open: func(c *Conn) { _ = c.sock().(*net.TCPConn).SetWriteBuffer(4096) },
		Message: func(c *Conn, m Message) {
			for i := range burst {
				_ = c.Send(Binary([]byte(strconv.Itoa(i) + ":" + strings.Repeat("x", size))))
			}
			_ = c.SendText("end")
		},
	}, Options{SendBuffer: 16, SlowConsumer: DropOldest, OnSlow: func(c *Conn, s bool) {
		slow <- s
	}})
	c := dial(t, ts.url) // its kernel takes some 128 KiB before the server's buffer fills
	defer c.CloseNow()
	c.SetReadLimit(-1)
	write(t, c, "go")
	require.True(t, testutil.Recv(t, slow, "OnSlow(true): the client does not read"))
	got := 0
	for {
		typ, s := read(t, c)
		if typ == websocket.MessageText {
			require.Equal(t, "end", s, "the newest message is never the one dropped")
			break
		}
		got++
	}
	require.False(t, testutil.Recv(t, slow, "OnSlow(false): the writer caught up"))
	require.Less(t, got, burst, "some were dropped")
	st := ts.Stats()
	require.Equal(t, uint64(burst-got), st.Dropped, "every message is either read or counted as dropped")
	require.Zero(t, st.Slow)
	require.Zero(t, st.SlowConsumerCloses)
}

// bcastRecorder is a recorder that also implements BroadcastObserver.
type bcastRecorder struct {
	*recorder
	spans chan string
	done  chan BroadcastResult
}

func (b *bcastRecorder) BroadcastDone(ctx context.Context, room string, m Message, r BroadcastResult) {
	b.spans <- span(ctx)
	b.done <- r
}

// A broadcast's outcome reaches a BroadcastObserver member by member: queued, dropped by
// the member's policy, or closed.
func TestBroadcastResults(t *testing.T) {
	for _, members := range []int{3, 3 * fanoutChunk} { // served inline, and in parallel
		t.Run(strconv.Itoa(members), func(t *testing.T) {
			rec := &bcastRecorder{recorder: &recorder{closed: make(chan string, 1)},
				spans: make(chan string, 1), done: make(chan BroadcastResult, 1)}
			s := New(HandlerFuncs{}, Options{SendBuffer: 1, SlowConsumer: DropNewest, Observer: rec})
			room := s.Room("r")
			conns := make([]*Conn, members)
			for i := range conns {
				conns[i] = fakeConn(s, uint64(i))
				room.Join(conns[i])
			}
			require.Equal(t, members, room.Len())
			full, closed := conns[1], conns[2]
			require.NoError(t, full.SendText("first"))
			closed.state.Store(stateClosing)

			room.Broadcast(Text("news"))
			require.Equal(t, "bcast:news", testutil.Recv(t, rec.spans, "BroadcastDone"), "the context Broadcast returned")
			r := testutil.Recv(t, rec.done, "BroadcastDone")
			require.Equal(t, members, r.Members)
			require.Equal(t, members-2, r.Queued)
			require.Equal(t, 1, r.Dropped)
			require.Equal(t, 1, r.Closed)
			require.Len(t, r.Failed, 2)
			for _, f := range r.Failed {
				switch f.Conn {
				case full:
					require.ErrorIs(t, f.Err, ErrSlowConsumer)
				case closed:
					require.ErrorIs(t, f.Err, ErrClosed)
				default:
					t.Fatalf("member %d reported failed: %v", f.Conn.ID(), f.Err)
				}
			}
		})
	}
}

// A batch whose write fails is counted as dropped: every message accepted is either
// written or counted.
func TestFailedBatchCountsAsDropped(t *testing.T) {
	s := New(HandlerFuncs{}, Options{})
	client, server := net.Pipe()
	require.NoError(t, client.Close()) // the peer is gone: the write fails
	c := fakeConn(s, 1)
	c.bw = newBatchWriter(server, true)
	c.bw.begin(time.Now().Add(wait))
	err := c.writeBatch([]outMsg{{m: Text("a")}, {m: Text("b")}, {m: Text("c")}})
	require.Error(t, err)
	c.bw.end()
	st := s.Stats()
	require.Equal(t, uint64(3), st.Dropped)
	require.Zero(t, st.MessagesOut)
}
