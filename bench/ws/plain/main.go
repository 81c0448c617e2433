// Command plain is the plain coder/websocket peer of examples/echo: the obvious way to write
// the server on the library dispatchkit's wsserver is built on. Each connection has one
// goroutine, the HTTP handler's, reading in a loop and writing its echoes directly; a set of
// connections under a mutex serves broadcast, written to one after another by the goroutine
// that read the message. It serves /ws, echoes every message to its sender and broadcasts a
// message that starts with "B" to every connection (the sender included).
//
//	go run ./ws/plain -addr 127.0.0.1:8082
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/dispatchkit/dispatchkit/bench/ws/internal/peermain"
)

func main() { peermain.Run("plain", ":8082", run) }

// run serves on ln until ctx ends, then closes every connection with 1001 and waits for
// their handlers.
func run(ctx context.Context, ln net.Listener) error {
	s := newServer()
	mux := http.NewServeMux()
	mux.Handle("/ws", s)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		s.closeAll()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.closeAll()
	herr := hs.Shutdown(sctx)
	s.handlers.Wait()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return herr
}
