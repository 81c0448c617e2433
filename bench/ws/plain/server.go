package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// writeWait bounds one write; a client that does not read for that long is closed.
const writeWait = 10 * time.Second

// server keeps the open connections for broadcast.
type server struct {
	mu       sync.Mutex
	conns    map[*websocket.Conn]struct{}
	closed   bool
	handlers sync.WaitGroup // running handlers, so that shutdown can wait for them
}

func newServer() *server { return &server{conns: make(map[*websocket.Conn]struct{})} }

// ServeHTTP accepts the connection and runs its read loop until it fails.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has written the HTTP error
	}
	if !s.add(c) {
		c.Close(websocket.StatusGoingAway, "shutting down")
		return
	}
	defer s.handlers.Done()
	defer s.remove(c)
	ctx := r.Context()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			c.CloseNow()
			return
		}
		if len(data) > 0 && data[0] == 'B' {
			s.broadcast(ctx, typ, data)
			continue
		}
		if err := write(ctx, c, typ, data); err != nil {
			c.CloseNow()
			return
		}
	}
}

// add registers c, and counts its handler, unless the server is shutting down.
func (s *server) add(c *websocket.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	return true
}

func (s *server) remove(c *websocket.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// broadcast writes the message to every connection in turn. The set is copied so that the
// writes do not hold the lock; a connection whose write fails is closed, and its own read
// loop then ends and removes it.
func (s *server) broadcast(ctx context.Context, typ websocket.MessageType, data []byte) {
	s.mu.Lock()
	targets := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		targets = append(targets, c)
	}
	s.mu.Unlock()
	for _, c := range targets {
		if err := write(ctx, c, typ, data); err != nil {
			c.CloseNow()
		}
	}
}

func write(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeWait)
	defer cancel()
	return c.Write(ctx, typ, data)
}

// closeAll refuses new connections and closes the open ones with 1001 (Going Away), in
// parallel, since each close waits for the peer's reply.
func (s *server) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.Close(websocket.StatusGoingAway, "shutting down") })
	}
	wg.Wait()
}
