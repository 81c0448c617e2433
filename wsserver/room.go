package wsserver

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/queue"
)

// A Room is a named set of connections to broadcast to. Its membership belongs to the room's
// own serial queue, not a mutex: Join, Leave and Broadcast queue a block there and return at
// once, and they take effect in the order they were called, so a Broadcast made after a
// Join reaches the new member, and two Broadcasts reach every member in order.
//
// With a Broker (Options.Broker) a room spans every node that has a room of that name: the
// room subscribes to it when the node gains its first member and unsubscribes when it loses
// its last; a Broadcast reaches this node's members directly and the other nodes' through
// the Broker, in the order it was made.
//
// A room lives while it is used. Once it has no members (and so no Broker subscription)
// and no Join on the way, it leaves its server: Server.Room makes a new one for the name
// when next asked, and Stats counts only the rooms alive, so names that come and go do
// not pile up. A *Room kept after that still works: its Join, Leave, Broadcast and Len go
// to the room of its name that lives now (Join makes it), in the order they were called.
type Room struct {
	name    string
	s       *Server
	q       *queue.Queue
	state   atomic.Int64  // joins on the way (counted at the call), or roomRetired
	members map[*Conn]int // index in list; touched only on q
	list    []*Conn       // touched only on q

	subscribed bool   // the Broker delivers the other nodes' messages; touched only on q
	gen        uint64 // counts subscriptions, so that a late delivery of an old one is ignored; q only
}

// noCtx is the context of the Observer where there is none (no Observer): nil.
var noCtx context.Context

// fanoutChunk is how many members one block serves in a parallel broadcast; rooms up to
// twice that are served by the room's own block, where spreading would cost more than it
// saves.
const fanoutChunk = 256

func newRoom(s *Server, name string) *Room {
	// The room's queue targets a Global root, not the width-limited handler queue: a
	// broadcast then never waits behind handlers, and handlers may Sync onto it (Len).
	return &Room{name: name, s: s, q: queue.NewSerial("ws.room", queue.WithObserver(s.opts.QueueObserver), queue.WithKey(name)), members: make(map[*Conn]int)}
}

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Queue returns the serial queue that owns the room's membership.
func (r *Room) Queue() *queue.Queue { return r.q }

// roomRetired marks a Room that left its server's registry (Room.state).
const roomRetired = -1 << 40

// live returns the room called r's name that takes a Join now: r, unless it retired. It
// counts the Join on the room it returns, which then cannot retire before the Join ran.
func (r *Room) live() *Room {
	for {
		v := r.state.Load()
		if v < 0 {
			r = r.s.Room(r.name)
			continue
		}
		if r.state.CompareAndSwap(v, v+1) {
			return r
		}
	}
}

// current returns the room called r's name that lives now, or r if there is none.
func (r *Room) current() *Room {
	if r.state.Load() >= 0 {
		return r
	}
	if live, ok := r.s.rooms.Load(r.name); ok {
		return live.(*Room)
	}
	return r
}

// retireIfUnused runs on q after every change: a room with no member, no subscription and
// no Join on the way leaves the server's registry.
func (r *Room) retireIfUnused() {
	if len(r.list) > 0 || r.subscribed || !r.state.CompareAndSwap(0, roomRetired) {
		return
	}
	if r.s.rooms.CompareAndDelete(r.name, r) {
		r.s.roomCount.Add(-1)
	}
}

// Join adds c to the room (once, however often it joins). A connection leaves its rooms
// by itself when it ends.
func (r *Room) Join(c *Conn) {
	r = r.live()
	r.q.Async(func() {
		r.state.Add(-1)
		if _, ok := r.members[c]; ok || !c.addRoom(r) {
			r.retireIfUnused()
			return
		}
		r.members[c] = len(r.list)
		r.list = append(r.list, c)
		if !r.subscribed && r.s.broker != nil {
			r.subscribe()
		}
	})
}

// subscribe asks the Broker for the other nodes' messages; it runs on q. A failure is
// counted and logged, and the next Join tries again.
func (r *Room) subscribe() {
	r.gen++
	gen := r.gen
	var err error
	if cb, ok := r.s.broker.(ContextBroker); ok && r.s.obs != nil {
		err = cb.SubscribeContext(r.name, func(ctx context.Context, m Message, from Remote) {
			r.deliverRemote(gen, ctx, m, from)
		})
	} else {
		err = r.s.broker.Subscribe(r.name, func(m Message) {
			r.q.Async(func() { r.deliver(gen, m) })
		})
	}
	if err != nil {
		r.s.brokerFailed(r.name, "subscribe", err)
		return
	}
	r.subscribed = true
}

// deliverRemote hands a message another node published, with the context its Broker
// carried, to the room's queue; it runs on the Broker's delivery goroutine (a traced server
// with a ContextBroker only). The room's block runs under what the RemoteObserver made of
// ctx (its receive span), so the message's trace goes on here.
func (r *Room) deliverRemote(gen uint64, ctx context.Context, m Message, from Remote) {
	if ctx == nil {
		ctx = context.Background()
	}
	ro, _ := r.s.obs.(RemoteObserver)
	if ro != nil {
		ctx = ro.RemoteReceived(ctx, r.name, m, from)
	}
	r.q.AsyncContext(context.WithoutCancel(ctx), func(context.Context) { r.deliver(gen, m) })
	if ro != nil {
		ro.RemoteDelivered(ctx, r.name, m)
	}
}

// deliver serves a message another node published to the room; it runs on q.
func (r *Room) deliver(gen uint64, m Message) {
	if !r.subscribed || gen != r.gen {
		return // from a subscription that has ended
	}
	r.s.stats.brokerReceived.Add(1)
	var ctx context.Context
	if r.s.obs != nil {
		ctx = queue.CurrentContext() // this block's: the sender's context stayed on its node
	}
	r.fanout(ctx, "", m)
}

// Leave removes c from the room; leaving a room one is not in does nothing.
func (r *Room) Leave(c *Conn) { r.leave(noCtx, c) }

// leave is Leave; with a ctx (a connection's close, for the Observer) its block runs under it.
func (r *Room) leave(ctx context.Context, c *Conn) {
	r = r.current()
	fn := func() {
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
		if last == 0 && r.subscribed {
			r.subscribed = false
			if err := r.s.broker.Unsubscribe(r.name); err != nil {
				r.s.brokerFailed(r.name, "unsubscribe", err)
			}
		}
		r.retireIfUnused()
	}
	if ctx != nil {
		r.q.AsyncContext(ctx, func(context.Context) { fn() })
		return
	}
	r.q.Async(fn)
}

// Len returns how many connections are in the room, once the Joins and Leaves called
// before it have taken effect. It waits for the room's queue, so do not call it from a
// block of that queue.
func (r *Room) Len() int {
	var n int
	r = r.current()
	r.q.Sync(func() {
		n = len(r.list)
		r.retireIfUnused()
	})
	return n
}

// Broadcast sends m to every member and returns at once. Each member gets it through its
// own outbound buffer, so a slow member delays nobody (its SlowConsumer policy applies to
// it alone). A large room is served by several blocks on the handler queue at once, spread
// over the cores. With a Broker, m is also published to the other nodes (first, so that
// they start while this node serves its own members); a publication the Broker refuses is
// counted in Stats as BrokerDropped, and this node's members get m all the same. m.Data is
// shared by every recipient: do not modify it afterwards.
func (r *Room) Broadcast(m Message) { r.broadcast("", m) }

// BroadcastKeyed is Broadcast of m as the latest value for key: with the Conflate policy,
// a member that still has a message with that key queued gets m in its place (see
// Conn.SendKeyed). Other nodes get m through the Broker as a plain Broadcast.
func (r *Room) BroadcastKeyed(key string, m Message) { r.broadcast(key, m) }

func (r *Room) broadcast(key string, m Message) {
	r = r.current()
	if r.s.obs == nil {
		r.q.Async(func() { r.publish(noCtx, key, m) })
		return
	}
	// The room's block runs under the sender's context (never cancelled: a broadcast made is
	// served), so its span is the sender's child and the publish span the block's.
	r.q.AsyncContext(context.WithoutCancel(queue.CurrentContext()), func(ctx context.Context) { r.publish(ctx, key, m) })
}

// publish runs on q: m to the other nodes, then to this node's members. ctx is the block's
// (nil without an Observer).
func (r *Room) publish(ctx context.Context, key string, m Message) {
	defer r.retireIfUnused()
	if obs := r.s.obs; obs != nil {
		// The publish span covers the publication to the other nodes too: a ContextBroker
		// carries its context, and their receive spans are its children.
		ctx = obs.Broadcast(ctx, r.name, m, len(r.list))
	}
	if b := r.s.broker; b != nil {
		var err error
		if cb, ok := b.(ContextBroker); ok && ctx != nil {
			err = cb.PublishContext(ctx, r.name, m)
		} else {
			err = b.Publish(r.name, m)
		}
		if err != nil {
			r.s.brokerFailed(r.name, "publish", err)
		} else {
			r.s.stats.brokerPublished.Add(1)
			r.s.brokerOK()
		}
	}
	r.serve(ctx, key, m)
}

// BroadcastLocal sends m to this node's members only, as Broadcast does without a Broker:
// for what is about this node's view (examples/chat sends each node's merged presence list
// this way).
func (r *Room) BroadcastLocal(m Message) {
	r = r.current()
	if r.s.obs == nil {
		r.q.Async(func() {
			r.fanout(noCtx, "", m)
			r.retireIfUnused()
		})
		return
	}
	r.q.AsyncContext(context.WithoutCancel(queue.CurrentContext()), func(ctx context.Context) {
		r.fanout(ctx, "", m)
		r.retireIfUnused()
	})
}

// fanout runs on the room's queue; ctx is the block's (nil without an Observer), and the
// Observer's Broadcast makes the publish a child of it.
func (r *Room) fanout(ctx context.Context, key string, m Message) {
	if obs := r.s.obs; obs != nil {
		ctx = obs.Broadcast(ctx, r.name, m, len(r.list))
	}
	r.serve(ctx, key, m)
}

// serve hands m to this node's members under ctx, what the Observer's Broadcast returned
// (nil without an Observer), and tells a BroadcastObserver how it went; it runs on q.
func (r *Room) serve(ctx context.Context, key string, m Message) {
	bo, _ := r.s.obs.(BroadcastObserver)
	var res *BroadcastResult
	if bo != nil {
		res = &BroadcastResult{Members: len(r.list)}
	}
	r.fanoutLocal(ctx, key, m, res)
	if bo != nil {
		bo.BroadcastDone(ctx, r.name, m, *res)
	}
}

// fanoutLocal hands m to every member of this node, tallying the outcomes in res unless it
// is nil; it runs on the room's queue.
func (r *Room) fanoutLocal(ctx context.Context, key string, m Message, res *BroadcastResult) {
	list := r.list
	if len(list) <= 2*fanoutChunk {
		for _, c := range list {
			err := c.enqueueKey(ctx, key, m)
			if res != nil {
				res.add(c, err)
			}
		}
		return
	}
	r.fanoutParallel(ctx, list, key, m, res)
}

// fanoutParallel splits list into chunks that helpers on the handler queue and this block
// claim one at a time. The block waits only for chunks a helper has claimed (and so is
// running), never for a helper still queued: with every worker busy it does all the work
// itself, so the broadcast cannot deadlock. Waiting keeps two broadcasts in order for every
// member, and list (which only this queue changes) valid until every chunk is served.
func (r *Room) fanoutParallel(ctx context.Context, list []*Conn, key string, m Message, res *BroadcastResult) {
	chunks := int64((len(list) + fanoutChunk - 1) / fanoutChunk)
	var next, served atomic.Int64
	var mu sync.Mutex // guards res
	done := make(chan struct{})
	work := func() {
		for {
			i := next.Add(1) - 1
			if i >= chunks {
				return
			}
			lo := int(i) * fanoutChunk
			var part BroadcastResult
			for _, c := range list[lo:min(lo+fanoutChunk, len(list))] {
				err := c.enqueueKey(ctx, key, m)
				if res != nil {
					part.add(c, err)
				}
			}
			if res != nil {
				mu.Lock()
				res.merge(&part)
				mu.Unlock()
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
