package main

import (
	"encoding/json"
	"slices"
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
}

func newRoom(name string, ws *wsserver.Room, obs queue.Observer) *room {
	r := &room{
		name:    name,
		q:       queue.NewSerial("chat.room", queue.WithObserver(obs)),
		ws:      ws,
		members: map[*wsserver.Conn]string{},
	}
	// Ten joins in a burst cause one presence update, sent when the handler gets to run.
	r.presence = dispatch.NewDataOr(r.q, func(uint64) { r.sendPresence() })
	r.presence.Resume()
	return r
}

// join adds c to the room as nick, sends it the history, and tells the others. It runs on q.
func (r *room) join(c *wsserver.Conn, nick string) {
	r.q.Async(func() {
		r.members[c] = nick
		r.ws.Join(c)
		sendJSON(c, historyMsg{Type: "history", Room: r.name, Messages: slices.Clone(r.history)})
		r.broadcast(systemMsg{Type: "system", Room: r.name, Text: nick + " joined"})
		r.presence.Merge(1)
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
		r.presence.Merge(1)
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
		r.presence.Merge(1)
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

// sendPresence sends the member list; it runs on q, from the presence source.
func (r *room) sendPresence() {
	names := make([]string, 0, len(r.members))
	for _, n := range r.members {
		names = append(names, n)
	}
	slices.Sort(names)
	r.broadcast(presenceMsg{Type: "presence", Room: r.name, Members: names})
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
