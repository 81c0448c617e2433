package main

import (
	"encoding/json"
	"slices"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/dispatchkit/dispatchkit/dispatch"
	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// historySize is how many recent messages a newcomer to a room receives.
const historySize = 50

// room is a chat room. Its members and history are owned by its serial queue: every change
// and every read happens in a block on q, so none of it needs a lock.
type room struct {
	name     string
	q        *queue.Queue
	ws       *wsserver.Room
	members  map[*wsserver.Conn]string // conn -> nickname; owned by q
	history  []chatMessage             // the last historySize messages, oldest first; owned by q
	presence *dispatch.DataSource      // coalesces bursts of joins and leaves into one update

	// users counts the members and the joins on the way (chat.enter adds one, leave takes it
	// back once done); at zero the room goes away through gone.
	users atomic.Int64
	gone  func(*room)

	// With other nodes (cl not nil): their members, by node, and whether this node follows
	// them (it does while it has members). Owned by q.
	cl     *cluster
	remote map[string]remoteMembers
	synced bool
}

// What changed, merged into the presence source: this node's members (which the other
// nodes are told about) or another node's (which they are not, lest they answer forever).
const (
	localChange  = 1
	remoteChange = 2
)

func newRoom(name string, ws *wsserver.Room, obs queue.Observer, cl *cluster) *room {
	r := &room{
		name:    name,
		q:       queue.NewSerial("chat.room", queue.WithObserver(obs), queue.WithKey(name)),
		ws:      ws,
		members: map[*wsserver.Conn]string{},
		cl:      cl,
		remote:  map[string]remoteMembers{},
	}
	// Ten joins in a burst cause one presence update, sent when the handler gets to run.
	r.presence = dispatch.NewDataOr(r.q, r.sendPresence)
	r.presence.Resume()
	return r
}

// join adds c to the room as nick, sends it the history, and tells the others. It runs on q.
func (r *room) join(c *wsserver.Conn, nick string) {
	r.q.Async(func() {
		first := len(r.members) == 0
		r.members[c] = nick
		r.ws.Join(c)
		if first && r.cl != nil {
			r.firstMember()
		}
		sendJSON(c, historyMsg{Type: "history", Room: r.name, Messages: slices.Clone(r.history)})
		r.broadcast(systemMsg{Type: "system", Room: r.name, Text: nick + " joined"})
		r.presence.Merge(localChange)
	})
}

// leave removes c from the room and tells the others.
func (r *room) leave(c *wsserver.Conn) {
	r.q.Async(func() {
		nick, ok := r.members[c]
		if !ok {
			return
		}
		delete(r.members, c)
		r.ws.Leave(c)
		r.broadcast(systemMsg{Type: "system", Room: r.name, Text: nick + " left"})
		if len(r.members) == 0 && r.cl != nil {
			r.lastMember()
		}
		r.presence.Merge(localChange)
		if r.users.Add(-1) == 0 && r.gone != nil {
			r.gone(r)
		}
	})
}

// rename changes c's nickname in the room.
func (r *room) rename(c *wsserver.Conn, nick string) {
	r.q.Async(func() {
		old, ok := r.members[c]
		if !ok || old == nick {
			return
		}
		r.members[c] = nick
		r.broadcast(systemMsg{Type: "system", Room: r.name, Text: old + " is now " + nick})
		r.presence.Merge(localChange)
	})
}

// say records a message in the history and sends it to every member.
func (r *room) say(c *wsserver.Conn, text string) {
	r.q.Async(func() {
		nick, ok := r.members[c]
		if !ok {
			sendJSON(c, errorMsg{Type: "error", Error: "join a room first"})
			return
		}
		m := chatMessage{Type: "message", Room: r.name, From: nick, Text: text, Time: time.Now().UTC()}
		if len(r.history) == historySize {
			r.history = append(r.history[:0], r.history[1:]...)
		}
		r.history = append(r.history, m)
		r.broadcast(m)
	})
}

// sendPresence sends this node's members the room's member list, on every node; it runs on
// q, from the presence source. When this node's members changed, the other nodes are told.
func (r *room) sendPresence(changed uint64) {
	if changed&localChange != 0 && r.synced {
		r.publishState()
	}
	names := r.localNames()
	for _, m := range r.remote {
		names = append(names, m.names...)
	}
	slices.Sort(names)
	data, err := json.Marshal(presenceMsg{Type: "presence", Room: r.name, Members: names})
	if err != nil {
		return
	}
	// Each node sends its own merged view to its own members.
	r.ws.BroadcastLocal(wsserver.Message{Type: websocket.MessageText, Data: data})
}

// localNames returns this node's members' nicknames, sorted.
func (r *room) localNames() []string {
	names := make([]string, 0, len(r.members))
	for _, n := range r.members {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (r *room) broadcast(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		return
	}
	r.ws.Broadcast(wsserver.Message{Type: websocket.MessageText, Data: data})
}

func sendJSON(c *wsserver.Conn, v any) {
	// A refused send (closed, or too slow a reader) is counted by the server; the chat has
	// nothing better to do with it.
	_ = c.SendJSON(v)
}
