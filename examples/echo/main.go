// Command echo is the smallest server on wsserver, and the one the load generator measures.
//
// It serves WebSocket connections on /ws (and on /, for clients given a URL without a path;
// by default on :8080) and echoes every message back
// to its sender, except a message that starts with "B", which is broadcast to every
// connection, as the benchmark peers do. Each connection's callbacks run on its own serial
// queue, all of them on one shared queue as wide as the machine has cores; sending never
// blocks, and an idle connection costs no goroutine and a few kilobytes (on Linux). With
// -pprof it also serves net/http/pprof under /debug/pprof/, to see where the time and the
// memory go. -readlimit raises the largest message it takes (32 KiB by default; interop
// clients check 64 KiB and more); -compress accepts permessage-deflate, for conformance
// suites' RFC 7692 cases. With -nats it is one node of several sharing the
// broadcast room through a NATS server (wsserver/natsbroker), as the multi-node benchmark
// runs it. It calls otelsetup.Setup,
// so the OTEL_* variables turn on traces and metrics (OTEL_TRACES_EXPORTER=console); left
// unset, its observer is inert and costs nothing. Stop it with Ctrl-C: it closes every
// connection with 1001 first.
//
// Its memory follows Go's collector settings, which the runtime reads from the environment
// (no flag of its own duplicates them): with the defaults (GOGC=100, no GOMEMLIMIT) the
// process holds about twice what is live after a connect burst; GOGC=50, or a GOMEMLIMIT
// a little above the live heap, trade some collector CPU for less (BENCHMARKS.md, issue 18).
//
//	go run ./examples/echo -addr 127.0.0.1:8080 -pprof
//	go run ./examples/echo -addr 127.0.0.1:8081 -nats nats://127.0.0.1:4222
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/dispatchkit/dispatchkit/tracing"
	"github.com/dispatchkit/dispatchkit/tracing/otelsetup"
	"github.com/dispatchkit/dispatchkit/wsserver"
	"github.com/dispatchkit/dispatchkit/wsserver/natsbroker"
)

func main() {
	cfg, _ := parseFlags(flag.CommandLine, os.Args[1:]) // CommandLine exits on an error
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	shutdownTelemetry, err := otelsetup.Setup(ctx, "echo")
	if err != nil {
		log.Fatal(err)
	}
	defer shutdownTelemetry(context.Background())
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		log.Fatal(err)
	}
	var nb *natsbroker.Broker
	if cfg.natsURL != "" {
		if nb, err = natsbroker.Connect(cfg.natsURL, natsbroker.Options{}); err != nil {
			log.Fatal(err)
		}
		cfg.opts.Broker = nb // an interface: set only with -nats, never to a nil *natsbroker.Broker
	}
	log.Printf("echo: serving ws://%s/ws", ln.Addr())
	err = run(ctx, ln, cfg.pprof, cfg.opts)
	if nb != nil {
		err = errors.Join(err, nb.Close())
	}
	if err != nil {
		log.Fatal(err)
	}
}

// config is what the command line asks for.
type config struct {
	addr    string
	pprof   bool
	natsURL string
	opts    wsserver.Options // what -readlimit and -compress set
}

// parseFlags parses the command's arguments with fs (flag.CommandLine in main; the
// conformance test parses the README's command with it).
func parseFlags(fs *flag.FlagSet, args []string) (config, error) {
	var cfg config
	fs.StringVar(&cfg.addr, "addr", ":8080", "address to listen on")
	fs.BoolVar(&cfg.pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/")
	fs.StringVar(&cfg.natsURL, "nats", "", "NATS server URL: share the broadcast room with the other nodes on it")
	readLimit := fs.Int64("readlimit", 0, "largest message accepted, in bytes (0: wsserver's default, 32 KiB; -1: no limit)")
	compress := fs.Bool("compress", false, "accept permessage-deflate (RFC 7692) when the client offers it")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	cfg.opts.ReadLimit = *readLimit
	if *compress {
		cfg.opts.CompressionMode = websocket.CompressionContextTakeover
	}
	return cfg, nil
}

// newServer is the whole application: echo, or broadcast what starts with "B" (to every
// node's connections, with a Broker). opts are the flags' options; the observers are added.
func newServer(opts wsserver.Options) *wsserver.Server {
	obs := tracing.NewObserver() // the global providers otelsetup.Setup installed
	opts.Observer, opts.QueueObserver = obs, obs
	var srv *wsserver.Server
	srv = wsserver.New(wsserver.HandlerFuncs{
		Open: func(c *wsserver.Conn) { srv.Room("all").Join(c) },
		Message: func(c *wsserver.Conn, m wsserver.Message) {
			if len(m.Data) > 0 && m.Data[0] == 'B' {
				srv.Room("all").Broadcast(m)
				return
			}
			_ = c.Send(m) // a full buffer closes the slow client; nothing to do here
		},
	}, opts)
	return srv
}

// run serves on ln until ctx ends, then shuts down: WebSocket connections first (each
// gets what it has queued, then 1001), then the HTTP server.
func run(ctx context.Context, ln net.Listener, withPprof bool, opts wsserver.Options) error {
	srv := newServer(opts)
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	mux.Handle("/{$}", srv) // the path of a URL without one, as a conformance suite's spec often has
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	hs := srv.HTTPServer("", mux)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	werr := srv.Shutdown(sctx)
	herr := hs.Shutdown(sctx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return errors.Join(werr, herr)
}
