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

// liveRooms counts the rooms in the server's registry.
func liveRooms(s *Server) int {
	n := 0
	s.rooms.Range(func(any, any) bool { n++; return true })
	return n
}

// A room without members goes away (one client that joins and leaves 1,000 rooms leaves
// none behind); a *Room kept from before still reaches the room of its name.
func TestRoomsGoAwayWhenEmpty(t *testing.T) {
	s := New(HandlerFuncs{}, Options{})
	a, b := fakeConn(s, 1), fakeConn(s, 2)
	for i := range 1000 {
		r := s.Room("r" + strconv.Itoa(i))
		r.Join(a)
		r.Leave(a)
		r.Broadcast(Text("to nobody"))
		r.Queue().Sync(func() {})
	}
	require.Zero(t, liveRooms(s), "rooms left behind")
	require.Zero(t, s.Stats().Rooms)

	old := s.Room("lobby")
	old.Join(a)
	require.Equal(t, 1, old.Len())
	require.Equal(t, 1, s.Stats().Rooms)
	old.Leave(a)
	require.Zero(t, old.Len())
	require.Zero(t, s.Stats().Rooms)
	require.NotSame(t, old, s.Room("lobby"), "a new room for the name")

	// The stale *Room: its Join and Broadcast go to the live room, in order.
	old.Join(b)
	old.Broadcast(Text("hello"))
	live := s.Room("lobby")
	require.Equal(t, 1, live.Len())
	require.Equal(t, 1, old.Len(), "Len of a stale room is the live one's")
	b.mu.Lock()
	require.Len(t, b.out, 1)
	require.Equal(t, "hello", string(b.out[0].m.Data))
	b.mu.Unlock()
	require.Equal(t, 1, s.Stats().Rooms)
	old.Leave(b)
	require.Zero(t, live.Len())
	require.Zero(t, liveRooms(s))
}

// Joins racing a room's retirement all land in the one live room of the name.
func TestRoomRetireRacesJoin(t *testing.T) {
	const workers, rounds = 8, 200
	s := New(HandlerFuncs{}, Options{})
	stale := s.Room("x")
	var wg sync.WaitGroup
	conns := make([]*Conn, workers)
	for w := range workers {
		conns[w] = fakeConn(s, uint64(w))
		wg.Go(func() {
			c := conns[w]
			for i := range rounds {
				r := s.Room("x")
				if i%2 == 0 {
					r = stale
				}
				r.Join(c)
				r.Broadcast(Text("m"))
				r.Leave(c)
			}
			stale.Join(c)
		})
	}
	wg.Wait()
	live := s.Room("x")
	require.Equal(t, workers, live.Len())
	require.Equal(t, 1, liveRooms(s))
	require.Equal(t, 1, s.Stats().Rooms)
	for _, c := range conns {
		c.mu.Lock()
		require.Equal(t, []*Room{live}, c.extra().rooms)
		c.mu.Unlock()
	}
}
