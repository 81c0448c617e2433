package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

// Presence across nodes. Several chat processes ("nodes") behind a load balancer share their
// rooms through a wsserver.Broker (NATS with -nats): chat messages and join/leave notices
// travel as room broadcasts. Who is in a room is per node, so each node tells the others its
// own members of a room on the Broker name "chat.presence:<room>":
//
//	{"node":"…","op":"state","members":["ann"],"ttl_ms":15000}  my members now; believe it for ttl_ms
//	{"node":"…","op":"query"}                                   I just got my first member: tell me yours
//	{"node":"…","op":"bye"}                                     I have no members any more
//
// A node sends its state whenever its members change (coalesced like the presence it
// shows), when asked, and every presenceEvery while it has members. Every node shows its
// clients the merge of its own members and the other nodes' states that have not expired:
// a node that dies without saying bye drops out of the others' lists after ttl_ms.
// A node subscribes to a room's presence while it has members there, as its wsserver room
// does to the room's messages.

// defaultPresenceEvery is how often a node re-announces its members; a state is believed
// three times as long.
const defaultPresenceEvery = 5 * time.Second

// presenceSync is what the nodes tell each other.
type presenceSync struct {
	Node    string   `json:"node"`
	Op      string   `json:"op"` // "state", "query" or "bye"
	Members []string `json:"members,omitempty"`
	TTL     int64    `json:"ttl_ms,omitempty"`
}

// remoteMembers is another node's last state for a room.
type remoteMembers struct {
	names   []string
	expires time.Time
}

// cluster is a chat node's link to the others; nil when it runs alone.
type cluster struct {
	broker wsserver.Broker
	node   string
	every  time.Duration
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

func newCluster(b wsserver.Broker, every time.Duration) *cluster {
	if every <= 0 {
		every = defaultPresenceEvery
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &cluster{broker: b, node: hex.EncodeToString(id[:]), every: every,
		stop: make(chan struct{}), done: make(chan struct{})}
}

func presenceName(room string) string { return "chat.presence:" + room }

// publish sends p (from this node) about room; a refusal (NATS down) is counted by the
// broker, and the periodic state repairs the others' view once it is back.
func (cl *cluster) publish(room string, p presenceSync) {
	p.Node = cl.node
	data, err := json.Marshal(p)
	if err != nil {
		return
	}
	if err := cl.broker.Publish(presenceName(room), wsserver.Text(string(data))); err != nil {
		slog.Debug("chat: presence not sent", "room", room, "err", err)
	}
}

// run re-announces every room's members every cl.every and expires the states of silent
// nodes, until stopped.
func (cl *cluster) run(a *chat) {
	defer close(cl.done)
	t := time.NewTicker(cl.every)
	defer t.Stop()
	for {
		select {
		case <-cl.stop:
			return
		case <-t.C:
			for _, r := range a.roomList() {
				r.q.Async(r.tick)
			}
		}
	}
}

// halt stops run and waits for it.
func (cl *cluster) halt() {
	cl.once.Do(func() { close(cl.stop) })
	<-cl.done
}

// The room's side; every method below runs on r.q.

// firstMember is called when the node gains the room's first member: the wsserver room's
// subscription is made (Len waits for the Join), then the presence subscription, then the
// query, in that order on the broker, so that the answer to the query proves both are on.
func (r *room) firstMember() {
	r.ws.Len()
	err := r.cl.broker.Subscribe(presenceName(r.name), func(m wsserver.Message) {
		var p presenceSync
		if json.Unmarshal(m.Data, &p) != nil || p.Node == "" || p.Node == r.cl.node {
			return
		}
		r.q.Async(func() { r.heard(p) })
	})
	if err != nil {
		slog.Warn("chat: presence of the other nodes unavailable", "room", r.name, "err", err)
		return
	}
	r.synced = true
	r.cl.publish(r.name, presenceSync{Op: "query"})
}

// lastMember is called when the node loses the room's last member.
func (r *room) lastMember() {
	if !r.synced {
		return
	}
	r.synced = false
	r.cl.publish(r.name, presenceSync{Op: "bye"})
	_ = r.cl.broker.Unsubscribe(presenceName(r.name))
	clear(r.remote)
}

// heard takes in another node's presence message.
func (r *room) heard(p presenceSync) {
	if !r.synced {
		return // from before the last member left
	}
	switch p.Op {
	case "query":
		if len(r.members) > 0 {
			r.publishState()
		}
	case "state":
		ttl := time.Duration(p.TTL) * time.Millisecond
		if ttl <= 0 {
			ttl = 3 * defaultPresenceEvery
		}
		r.remote[p.Node] = remoteMembers{names: p.Members, expires: time.Now().Add(ttl)}
		r.presence.Merge(remoteChange)
	case "bye":
		if _, ok := r.remote[p.Node]; ok {
			delete(r.remote, p.Node)
			r.presence.Merge(remoteChange)
		}
	}
}

// publishState tells the other nodes this node's members of the room.
func (r *room) publishState() {
	r.cl.publish(r.name, presenceSync{Op: "state", Members: r.localNames(), TTL: (3 * r.cl.every).Milliseconds()})
}

// tick re-announces the room's members and forgets the nodes that went silent.
func (r *room) tick() {
	if !r.synced {
		return
	}
	if len(r.members) > 0 {
		r.publishState()
	}
	now := time.Now()
	changed := false
	for node, m := range r.remote {
		if now.After(m.expires) {
			delete(r.remote, node)
			changed = true
		}
	}
	if changed {
		r.presence.Merge(remoteChange)
	}
}
