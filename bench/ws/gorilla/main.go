// Command gorilla is the gorilla/websocket peer of examples/echo, written the way gorilla's
// chat example writes a server: a hub goroutine owns the set of clients and fans broadcasts
// out to them; every connection has a reader goroutine, a writer goroutine and a buffered
// channel between them. It serves /ws, echoes every message to its sender and broadcasts a
// message that starts with "B" to every connection (the sender included).
//
//	go run ./ws/gorilla -addr 127.0.0.1:8081
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/dispatchkit/dispatchkit/bench/ws/internal/peermain"
)

func main() { peermain.Run("gorilla", ":8081", run) }

// run serves on ln until ctx ends, then stops the hub, which closes every connection.
func run(ctx context.Context, ln net.Listener) error {
	h := newHub()
	hubDone := make(chan struct{})
	go func() { h.run(); close(hubDone) }()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { serveWS(h, w, r) })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		h.stop()
		<-hubDone
		return err
	case <-ctx.Done():
	}
	// Hijacked connections are not the HTTP server's: the hub closes them.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	herr := hs.Shutdown(sctx)
	h.stop()
	<-hubDone
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return herr
}
