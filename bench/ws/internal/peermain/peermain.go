// Package peermain is the main function every benchmark peer server shares: it listens on
// -addr, serves until SIGINT or SIGTERM, and exits with the server's error.
package peermain

import (
	"context"
	"flag"
	"log"
	"net"
	"os/signal"
	"syscall"
)

// Run parses -addr (default addr), listens, and calls run with a context that ends on
// SIGINT or SIGTERM; name prefixes the log line.
func Run(name, addr string, run func(ctx context.Context, ln net.Listener) error) {
	listen := flag.String("addr", addr, "address to listen on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: serving ws://%s/ws", name, ln.Addr())
	if err := run(ctx, ln); err != nil {
		log.Fatal(err)
	}
}
