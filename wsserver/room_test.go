package wsserver

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestRoomJoinLeaveBroadcast(t *testing.T) {
	joined := make(chan *Conn, 8)
	var ts *testServer
	ts = start(t, HandlerFuncs{
		Open: func(c *Conn) { ts.Room("lobby").Join(c); joined <- c },
		Message: func(c *Conn, m Message) {
			if string(m.Data) == "leave" {
				ts.Room("lobby").Leave(c)
				_ = c.SendText("left")
				return
			}
			ts.Room("lobby").Broadcast(m)
		},
	}, Options{})
	a, b := dial(t, ts.url), dial(t, ts.url)
	defer a.CloseNow()
	defer b.CloseNow()
	testutil.Recv(t, joined, "a joined")
	testutil.Recv(t, joined, "b joined")
	room := ts.Room("lobby")
	require.Same(t, room, ts.Room("lobby"))
	require.Equal(t, "lobby", room.Name())
	require.Equal(t, 2, room.Len())
	for i := range 5 {
		write(t, a, "m"+strconv.Itoa(i))
	}
	for i := range 5 { // every member, in order, the sender included
		_, s := read(t, a)
		require.Equal(t, "m"+strconv.Itoa(i), s)
		_, s = read(t, b)
		require.Equal(t, "m"+strconv.Itoa(i), s)
	}
	write(t, b, "leave")
	_, s := read(t, b)
	require.Equal(t, "left", s)
	require.Equal(t, 1, room.Len())
	// Leaving on close is automatic.
	require.NoError(t, a.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return room.Len() == 0 }, wait, 1e6)
}

// A broadcast to a room larger than one chunk is spread over the handler queue and still
// reaches every member once, in order.
func TestLargeRoomBroadcast(t *testing.T) {
	const members, msgs = 1200, 3
	s := New(HandlerFuncs{}, Options{HandlerWidth: 4})
	room := s.Room("big")
	var mu sync.Mutex
	got := map[*Conn][]string{}
	conns := make([]*Conn, members)
	for i := range conns {
		conns[i] = fakeConn(s, uint64(i))
		room.Join(conns[i])
	}
	require.Equal(t, members, room.Len())
	for i := range msgs {
		room.Broadcast(Text("b" + strconv.Itoa(i)))
	}
	room.Queue().Sync(func() {}) // the broadcasts ran (each waits for its chunks)
	for _, c := range conns {
		c.mu.Lock()
		for _, e := range c.out {
			mu.Lock()
			got[c] = append(got[c], string(e.m.Data))
			mu.Unlock()
		}
		c.mu.Unlock()
	}
	require.Len(t, got, members)
	for _, msgs := range got {
		require.Equal(t, []string{"b0", "b1", "b2"}, msgs)
	}
}

// fakeConn is a Conn with no network: its writer is marked running, so sends stay queued.
func fakeConn(s *Server, id uint64) *Conn {
	c := &Conn{id: id, s: s, req: &requestInfo{}}
	c.writing = true
	return c
}

var _ = context.Background
