// Command nbio is the lesismal/nbio peer of examples/echo, written as nbio's own examples
// are: no goroutine per connection (nbio's pollers read every socket through epoll and
// parse the frames themselves), its default settings, the callbacks run by its executor. It
// serves /ws, echoes every message to its sender and broadcasts a message that starts with
// "B" to every connection (the sender included).
//
//	go run ./ws/nbio -addr 127.0.0.1:8084
package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/dispatchkit/dispatchkit/bench/ws/internal/peermain"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

func main() { peermain.Run("nbio", ":8084", run) }

// server keeps the open connections for broadcast.
type server struct {
	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	closed bool
}

func (s *server) upgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.OnOpen(func(c *websocket.Conn) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			_ = c.WriteClose(1001, "shutting down")
			return
		}
		s.conns[c] = struct{}{}
	})
	u.OnClose(func(c *websocket.Conn, err error) {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	})
	u.OnMessage(func(c *websocket.Conn, typ websocket.MessageType, data []byte) {
		if len(data) > 0 && data[0] == 'B' {
			s.mu.Lock()
			for t := range s.conns {
				_ = t.WriteMessage(typ, data)
			}
			s.mu.Unlock()
			return
		}
		_ = c.WriteMessage(typ, data)
	})
	return u
}

// run serves on ln until ctx ends, then closes every connection with 1001 and stops the
// engine.
func run(ctx context.Context, ln net.Listener) error {
	logging.SetLevel(logging.LevelError)
	s := &server{conns: make(map[*websocket.Conn]struct{})}
	u := s.upgrader()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		_, _ = u.Upgrade(w, r, nil) // Upgrade answers a failed handshake itself
	})
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp",
		Addrs:   []string{ln.Addr().String()},
		Listen:  func(string, string) (net.Listener, error) { return ln, nil },
		Handler: mux,
		MaxLoad: 1 << 20, // the default 10k would refuse the 19,000-connection runs
	})
	if err := engine.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.WriteClose(1001, "shutting down")
	}
	s.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return engine.Shutdown(sctx)
}
