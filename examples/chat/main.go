// Command chat is dispatchkit's main demo: a multi-room chat in the browser.
//
//	go run ./examples/chat            # then open http://localhost:8080
//
// Every connection's callbacks run on the connection's own serial queue, so per-connection
// state (kept on the connection with a wsserver.Key) needs no lock and no map; every room
// keeps its members and its last 50 messages on the room's own serial queue, and goes away
// with its last member (at most 1,000 rooms exist at once); bursts of joins and leaves are coalesced into one presence update by a
// dispatch data source. The page (embedded, no build step) reconnects with backoff when the
// server goes away. Flags: -addr (default :8080), -nats (a NATS server to share the rooms
// with other chat nodes through, e.g. nats://127.0.0.1:4222; see the README).
//
// It calls otelsetup.Setup, so the standard OTEL_* variables send its traces and metrics
// somewhere (OTEL_TRACES_EXPORTER=console prints spans), and it serves the live queue
// inspector at /debug/dispatch.
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/tracing"
	"github.com/dispatchkit/dispatchkit/tracing/otelsetup"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

//go:embed static
var static embed.FS

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

// run serves the chat until ctx ends or the process gets SIGINT/SIGTERM.
func run(ctx context.Context, args []string, out io.Writer) error {
	fset := flag.NewFlagSet("chat", flag.ContinueOnError)
	fset.SetOutput(out)
	addr := fset.String("addr", ":8080", "address to listen on")
	natsURL := fset.String("nats", "", "NATS server URL(s), comma-separated, to share rooms with other chat nodes (e.g. nats://127.0.0.1:4222); empty: run alone")
	if err := fset.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTelemetry, err := otelsetup.Setup(ctx, "chat")
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTelemetry(ctx) // flush what was recorded; an exporter gone away is not fatal
	}()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	app, closeNode, err := newNode(*natsURL, out)
	if err != nil {
		ln.Close()
		return err
	}
	// Idle keep-alive connections (the page and its assets) are closed after a minute.
	srv := &http.Server{Handler: app.routes(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	fmt.Fprintf(out, "chat: listening on http://%s\n", displayAddr(ln.Addr()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return errors.Join(err, closeNode())
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// WebSocket connections are hijacked: the server's Shutdown says goodbye to them (1001).
	err = errors.Join(app.ws.Shutdown(shutdown), srv.Shutdown(shutdown))
	return errors.Join(err, closeNode())
}

func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil || host == "" || host == "::" || host == "0.0.0.0" {
		return "localhost:" + port
	}
	return net.JoinHostPort(host, port)
}

// chat is the application: the WebSocket server, its handler and the rooms.
type chat struct {
	ws       *wsserver.Server
	obs      *tracing.Observer                // spans and metrics of the server and every queue
	insp     *tracing.Inspector               // served at /debug/dispatch
	rooms    *queue.Guarded[map[string]*room] // the rooms with members (or joins on the way)
	maxRooms int                              // how many rooms may exist at once
	cl       *cluster                         // the other nodes; nil when alone
}

// defaultMaxRooms bounds the rooms of a chat node: a room goes away when its last member
// leaves, and a client is in one room at a time, so only many clients together reach it.
const defaultMaxRooms = 1000

// client is one connection's state, kept on the connection (clientKey). The connection's
// callbacks run one at a time on its queue, and only they touch it: no lock, no map.
type client struct {
	nick string
	room *room
}

// clientKey is where a connection keeps its *client.
var clientKey = wsserver.NewKey[*client]("chat.client")

func newChat() *chat { return newChatNode(nil) }

// newChatNode returns the chat; with cl, its rooms span the nodes cl links.
func newChatNode(cl *cluster) *chat {
	insp := tracing.NewInspector()
	obs := tracing.NewObserver(tracing.WithInspector(insp))
	a := &chat{obs: obs, insp: insp, cl: cl, maxRooms: defaultMaxRooms,
		rooms: queue.NewGuarded(map[string]*room{}, queue.WithLabel("chat.rooms"), queue.WithObserver(obs))}
	opts := wsserver.Options{ReadLimit: 16 << 10, Observer: obs, QueueObserver: obs}
	if cl != nil {
		opts.Broker = cl.broker
		go cl.run(a)
	}
	a.ws = wsserver.New(wsserver.HandlerFuncs{
		Open:    a.open,
		Message: a.message,
		Close:   a.close,
	}, opts)
	insp.WatchServer("chat", a.ws)
	return a
}

func (a *chat) routes() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(sub)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})
	mux.Handle("/ws", a.ws)
	mux.Handle("GET /debug/dispatch", a.insp)
	return mux
}

// enter returns the named room for a member about to join it, creating it if need be, or
// nil when that would make more than maxRooms rooms. The member counts from now (its join
// is on the way), so the room cannot go away before the join; its leave gives it back.
func (a *chat) enter(name string) *room {
	var r *room
	a.rooms.Sync(func(m *map[string]*room) {
		if r = (*m)[name]; r == nil {
			if len(*m) >= a.maxRooms {
				return
			}
			r = newRoom(name, a.ws.Room("chat:"+name), a.obs, a.cl)
			r.gone = a.forget
			(*m)[name] = r
		}
		r.users.Add(1)
	})
	return r
}

// forget removes r once it has no member and no join on the way (its last leave, with
// its goodbye to the other nodes, has run on its queue). A room that got a member again
// in the meantime stays.
func (a *chat) forget(r *room) {
	a.rooms.Async(func(m *map[string]*room) {
		if (*m)[r.name] == r && r.users.Load() == 0 {
			delete(*m, r.name)
			r.presence.Cancel()
		}
	})
}

func (a *chat) open(c *wsserver.Conn) {
	clientKey.Set(c, &client{})
}

func (a *chat) close(c *wsserver.Conn, _ error) {
	cl, ok := clientKey.Get(c)
	if !ok {
		return
	}
	if cl.room != nil {
		cl.room.leave(c)
	}
}

func (a *chat) message(c *wsserver.Conn, m wsserver.Message) {
	cl, ok := clientKey.Get(c)
	if !ok {
		return
	}
	var in inbound
	if err := json.Unmarshal(m.Data, &in); err != nil {
		sendJSON(c, errorMsg{Type: "error", Error: "malformed message: expected a JSON object with a type"})
		return
	}
	switch in.Type {
	case "join":
		if !roomName.MatchString(in.Room) {
			sendJSON(c, errorMsg{Type: "error", Error: "a room name is 1 to 32 letters, digits, '-' or '_'"})
			return
		}
		if in.Nick != "" && !validNick(in.Nick) {
			sendJSON(c, errorMsg{Type: "error", Error: "a nickname is 1 to 24 printable characters"})
			return
		}
		if in.Nick != "" {
			cl.nick = in.Nick
		}
		if cl.nick == "" {
			cl.nick = fmt.Sprintf("guest-%d", c.ID())
		}
		if cl.room != nil && cl.room.name == in.Room {
			return
		}
		next := a.enter(in.Room)
		if next == nil {
			sendJSON(c, errorMsg{Type: "error", Error: "too many rooms: join one that exists"})
			return
		}
		if cl.room != nil {
			cl.room.leave(c)
		}
		cl.room = next
		sendJSON(c, welcomeMsg{Type: "welcome", Nick: cl.nick})
		cl.room.join(c, cl.nick)
	case "message":
		switch {
		case cl.room == nil:
			sendJSON(c, errorMsg{Type: "error", Error: "join a room first"})
		case in.Text == "":
			sendJSON(c, errorMsg{Type: "error", Error: "empty message"})
		case len([]rune(in.Text)) > maxText:
			sendJSON(c, errorMsg{Type: "error", Error: fmt.Sprintf("a message is at most %d characters", maxText)})
		default:
			cl.room.say(c, in.Text)
		}
	case "nick":
		if !validNick(in.Nick) {
			sendJSON(c, errorMsg{Type: "error", Error: "a nickname is 1 to 24 printable characters"})
			return
		}
		cl.nick = in.Nick
		sendJSON(c, welcomeMsg{Type: "welcome", Nick: cl.nick})
		if cl.room != nil {
			cl.room.rename(c, cl.nick)
		}
	default:
		sendJSON(c, errorMsg{Type: "error", Error: fmt.Sprintf("unknown message type %q", in.Type)})
	}
}
