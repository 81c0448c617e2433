// Command gws is the lxzan/gws peer of examples/echo, written as gws's own examples are: a
// goroutine per connection running gws's ReadLoop with its small default buffers, the
// callbacks on it, and gws's Broadcaster (one frame encoded once) for broadcast. It serves
// /ws, echoes every message to its sender and broadcasts a message that starts with "B" to
// every connection (the sender included).
//
//	go run ./ws/gws -addr 127.0.0.1:8083
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/dispatchkit/dispatchkit/bench/ws/internal/peermain"
	"github.com/lxzan/gws"
)

func main() { peermain.Run("gws", ":8083", run) }

// writeWait bounds one write; a client that does not read for that long is closed.
const writeWait = 10 * time.Second

// server is gws's event handler and the set of open connections, for broadcast.
type server struct {
	gws.BuiltinEventHandler
	mu       sync.Mutex
	conns    map[*gws.Conn]struct{}
	closed   bool
	handlers sync.WaitGroup
}

func (s *server) OnOpen(c *gws.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.WriteClose(1001, []byte("shutting down"))
		return
	}
	s.conns[c] = struct{}{}
}

func (s *server) OnClose(c *gws.Conn, err error) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *server) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	data := m.Bytes()
	if len(data) > 0 && data[0] == 'B' {
		b := gws.NewBroadcaster(m.Opcode, data)
		defer b.Close()
		s.mu.Lock()
		for t := range s.conns {
			_ = b.Broadcast(t)
		}
		s.mu.Unlock()
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeWait))
	_ = c.WriteMessage(m.Opcode, data)
}

// run serves on ln until ctx ends, then closes every connection with 1001 and waits for
// their read loops.
func run(ctx context.Context, ln net.Listener) error {
	s := &server{conns: make(map[*gws.Conn]struct{})}
	up := gws.NewUpgrader(s, &gws.ServerOption{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		s.handlers.Add(1)
		defer s.handlers.Done()
		c.ReadLoop() // on the handler's goroutine, as gws's examples do
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.WriteClose(1001, []byte("shutting down"))
	}
	s.mu.Unlock()
	herr := hs.Shutdown(sctx)
	s.handlers.Wait()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return herr
}
