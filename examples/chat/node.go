package main

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/dispatchkit/dispatchkit/wsserver/natsbroker"
)

// newNode returns the chat: alone when natsURL is empty, else a node whose rooms span every
// chat node on that NATS server. closeNode ends what newNode started (after the WebSocket
// server's Shutdown): it stops the presence announcements, lets the rooms say goodbye, and
// closes the NATS connection.
func newNode(natsURL string, out io.Writer) (app *chat, closeNode func() error, err error) {
	if natsURL == "" {
		return newChat(), func() error { return nil }, nil
	}
	var ready atomic.Pointer[chat]
	b, err := natsbroker.Connect(natsURL, natsbroker.Options{
		// Back after an outage: the others may have expired this node's members.
		OnReconnect: func() {
			if a := ready.Load(); a != nil {
				a.reannounce()
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	app = newChatNode(newCluster(b, 0))
	ready.Store(app)
	fmt.Fprintf(out, "chat: node %s sharing rooms through NATS at %s\n", b.Node(), natsURL)
	return app, func() error { return errors.Join(app.closeCluster(), b.Close()) }, nil
}

// roomList returns the rooms made so far.
func (a *chat) roomList() []*room {
	var list []*room
	a.rooms.Sync(func(m *map[string]*room) {
		for _, r := range *m {
			list = append(list, r)
		}
	})
	return list
}

// reannounce tells the other nodes every room's members again and asks for theirs.
func (a *chat) reannounce() {
	for _, r := range a.roomList() {
		r.q.Async(func() {
			if r.synced && len(r.members) > 0 {
				r.publishState()
				r.cl.publish(r.name, presenceSync{Op: "query"})
			}
		})
	}
}

// closeCluster stops the presence announcements and waits (up to 10 seconds) for every
// room's queued work, goodbyes included, to be done.
func (a *chat) closeCluster() error {
	if a.cl == nil {
		return nil
	}
	a.cl.halt()
	done := make(chan struct{})
	go func() {
		for _, r := range a.roomList() {
			r.q.Sync(func() {})
			r.ws.Queue().Sync(func() {})
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("chat: rooms still busy 10s after shutdown")
	}
}
