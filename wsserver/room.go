package wsserver

import (
	"context"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/queue"
)

// A Room is a named set of connections to broadcast to. Its membership belongs to the room's
// own serial queue, not a mutex: Join, Leave and Broadcast queue a block there and return at
// once, and they take effect in the order they were called, so a Broadcast made after a
// Join reaches the new member, and two Broadcasts reach every member in order.
type Room struct {
	name    string
	s       *Server
	q       *queue.Queue
	members map[*Conn]int // index in list; touched only on q
	list    []*Conn       // touched only on q
}

// fanoutChunk is how many members one block serves in a parallel broadcast; rooms up to
// twice that are served by the room's own block, where spreading would cost more than it
// saves.
const fanoutChunk = 256

func newRoom(s *Server, name string) *Room {
	// The room's queue targets a Global root, not the width-limited handler queue: a
	// broadcast then never waits behind handlers, and handlers may Sync onto it (Len).
	return &Room{name: name, s: s, q: queue.NewSerial("ws.room", queue.WithObserver(s.opts.QueueObserver)), members: make(map[*Conn]int)}
}

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Queue returns the serial queue that owns the room's membership.
func (r *Room) Queue() *queue.Queue { return r.q }

// Join adds c to the room (once, however often it joins). A connection leaves its rooms
// by itself when it ends.
func (r *Room) Join(c *Conn) {
	r.q.Async(func() {
		if _, ok := r.members[c]; ok || !c.addRoom(r) {
			return
		}
		r.members[c] = len(r.list)
		r.list = append(r.list, c)
	})
}

// Leave removes c from the room; leaving a room one is not in does nothing.
func (r *Room) Leave(c *Conn) {
	r.q.Async(func() {
		i, ok := r.members[c]
		if !ok {
			return
		}
		last := len(r.list) - 1
		moved := r.list[last]
		r.list[i] = moved
		r.members[moved] = i
		r.list[last] = nil
		r.list = r.list[:last]
		delete(r.members, c)
		c.removeRoom(r)
	})
}

// Len returns how many connections are in the room, once the Joins and Leaves called
// before it have taken effect. It waits for the room's queue, so do not call it from a
// block of that queue.
func (r *Room) Len() int {
	var n int
	r.q.Sync(func() { n = len(r.list) })
	return n
}

// Broadcast sends m to every member and returns at once. Each member gets it through its
// own outbound buffer, so a slow member delays nobody (its SlowConsumer policy applies to
// it alone). A large room is served by several blocks on the handler queue at once, spread
// over the cores. m.Data is shared by every recipient: do not modify it afterwards.
func (r *Room) Broadcast(m Message) {
	var sender context.Context
	if r.s.obs != nil {
		sender = queue.CurrentContext()
	}
	r.q.Async(func() { r.fanout(sender, m) })
}

// fanout runs on the room's queue.
func (r *Room) fanout(sender context.Context, m Message) {
	list := r.list
	var ctx context.Context
	if obs := r.s.obs; obs != nil {
		ctx = obs.Broadcast(sender, r.name, m, len(list))
	}
	if len(list) <= 2*fanoutChunk {
		for _, c := range list {
			_ = c.enqueue(ctx, m)
		}
		return
	}
	r.fanoutParallel(ctx, list, m)
}

// fanoutParallel splits list into chunks that helpers on the handler queue and this block
// claim one at a time. The block waits only for chunks a helper has claimed (and so is
// running), never for a helper still queued: with every worker busy it does all the work
// itself, so the broadcast cannot deadlock. Waiting keeps two broadcasts in order for every
// member, and list (which only this queue changes) valid until every chunk is served.
func (r *Room) fanoutParallel(ctx context.Context, list []*Conn, m Message) {
	chunks := int64((len(list) + fanoutChunk - 1) / fanoutChunk)
	var next, served atomic.Int64
	done := make(chan struct{})
	work := func() {
		for {
			i := next.Add(1) - 1
			if i >= chunks {
				return
			}
			lo := int(i) * fanoutChunk
			for _, c := range list[lo:min(lo+fanoutChunk, len(list))] {
				_ = c.enqueue(ctx, m)
			}
			if served.Add(1) == chunks {
				close(done)
			}
		}
	}
	helpers := min(int64(r.s.handlers.Width())-1, chunks-1)
	for range helpers {
		r.s.handlers.Async(work)
	}
	work()
	<-done
}
