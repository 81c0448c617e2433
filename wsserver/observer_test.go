package wsserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/queue"
)

type ctxKey string

// recorder is an Observer that tags contexts and records what it saw.
type recorder struct {
	mu       sync.Mutex
	events   []string
	sentFrom []string // the "span" value of the ctx Sent got
	written  []string // the "span" value of the ctx Written got
	closed   chan string
}

func span(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey("span")).(string)
	return s
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) Handshake(ctx context.Context, req *http.Request) context.Context {
	r.add("handshake")
	return context.WithValue(ctx, ctxKey("span"), "conn")
}
func (r *recorder) Refused(ctx context.Context, req *http.Request, status int, reason string) {
	r.add("rejected " + reason)
}
func (r *recorder) Opened(ctx context.Context, c *Conn) { r.add("opened " + span(ctx)) }
func (r *recorder) Closed(ctx context.Context, c *Conn, lived time.Duration, reason string, err error) {
	r.add("closed " + reason)
	r.closed <- reason
}
func (r *recorder) Received(ctx context.Context, c *Conn, m Message) context.Context {
	r.add("received in " + span(ctx))
	return context.WithValue(ctx, ctxKey("span"), "recv:"+string(m.Data))
}
func (r *recorder) Handled(ctx context.Context, c *Conn, m Message, recovered any) {
	r.add("handled " + span(ctx))
}
func (r *recorder) Sent(ctx context.Context, c *Conn, m Message) context.Context {
	r.mu.Lock()
	r.sentFrom = append(r.sentFrom, span(ctx))
	r.mu.Unlock()
	return context.WithValue(ctx, ctxKey("span"), "send:"+string(m.Data))
}
func (r *recorder) Written(ctx context.Context, c *Conn, m Message, err error) {
	r.mu.Lock()
	r.written = append(r.written, span(ctx))
	r.mu.Unlock()
}
func (r *recorder) Dropped(ctx context.Context, c *Conn, m Message, reason string) {
	r.add("dropped " + reason)
}
func (r *recorder) Broadcast(ctx context.Context, room string, m Message, members int) context.Context {
	r.add("broadcast from " + span(ctx))
	return context.WithValue(ctx, ctxKey("span"), "bcast:"+string(m.Data))
}

func TestObserverFollowsAMessage(t *testing.T) {
	rec := &recorder{closed: make(chan string, 1)}
	current := make(chan string, 4)
	var ts *testServer
	ts = start(t, HandlerFuncs{
		Open: func(c *Conn) {
			require.Equal(t, "conn", span(c.Context()), "Conn.Context carries the root")
			ts.Room("r").Join(c)
		},
		Message: func(c *Conn, m Message) {
			current <- span(queue.CurrentContext())
			if string(m.Data) == "all" {
				ts.Room("r").Broadcast(m)
				return
			}
			_ = c.Send(m)
		},
	}, Options{Observer: rec, Authenticate: func(r *http.Request) (any, error) {
		if r.URL.Query().Has("deny") {
			return nil, errors.New("no")
		}
		return nil, nil
	}})
	require.Equal(t, http.StatusUnauthorized, dialStatus(t, ts.url+"?deny", nil))

	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "one")
	_, s := read(t, c)
	require.Equal(t, "one", s)
	require.Equal(t, "recv:one", testutil.Recv(t, current, "CurrentContext in OnMessage"))
	write(t, c, "all")
	_, s = read(t, c)
	require.Equal(t, "all", s)
	require.Equal(t, "recv:all", testutil.Recv(t, current, "CurrentContext in OnMessage"))
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	require.Equal(t, ReasonNormal, testutil.Recv(t, rec.closed, "Closed"))
	// Written runs on the sender's side once the write is done: the client may have read the
	// message, closed, and the connection ended before the broadcast's Written is recorded.
	require.Eventually(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.written) == 2
	}, wait, time.Millisecond)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, []string{
		"handshake", "rejected unauthorized",
		"handshake", "opened conn",
		"received in conn",
		"received in conn",
		"closed normal",
	}, without(rec.events, "handled recv:one", "handled recv:all", "broadcast from recv:all"))
	// Handled runs after OnMessage returns, and the echo may reach the client (which then
	// sends the next message) before that: only its order against its own Received is fixed.
	one := slices.Index(rec.events, "handled recv:one")
	require.Greater(t, one, slices.Index(rec.events, "received in conn"))
	require.Contains(t, rec.events, "broadcast from recv:all", "Broadcast carries the sender's context")
	require.Contains(t, rec.events, "handled recv:all")
	require.Equal(t, []string{"recv:one", "bcast:all"}, rec.sentFrom, "Sent gets the sender's context")
	require.Equal(t, []string{"send:one", "send:all"}, rec.written, "Written gets what Sent returned")
}

// without drops the named events, whose order against the others depends on scheduling.
func without(events []string, names ...string) []string {
	var out []string
	for _, e := range events {
		if !slices.Contains(names, e) {
			out = append(out, e)
		}
	}
	return out
}

// inertRecorder is a recorder that says it is inert (queue.Inert).
type inertRecorder struct{ recorder }

func (*inertRecorder) Inert() bool { return true }

// An inert Observer is skipped: the server behaves as without one.
func TestInertObserverIsSkipped(t *testing.T) {
	rec := &inertRecorder{}
	got := make(chan string, 1)
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { got <- string(m.Data) }}, Options{Observer: rec})
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "hi")
	require.Equal(t, "hi", testutil.Recv(t, got, "the message"))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Empty(t, rec.events)
}

// livedRecorder records the lifetime the Observer hears of at the close.
type livedRecorder struct {
	*recorder
	lived chan time.Duration
}

func (r livedRecorder) Closed(ctx context.Context, c *Conn, lived time.Duration, reason string, err error) {
	r.lived <- lived
}

// The Observer hears how long a connection lived, from its opening (which a connection
// keeps only when there is an Observer), not from the server's start.
func TestObserverHearsHowLongAConnectionLived(t *testing.T) {
	rec := livedRecorder{&recorder{}, make(chan time.Duration, 1)}
	s := New(HandlerFuncs{}, Options{Observer: rec})
	s.start = s.start.Add(-time.Hour) // as if the server had run for an hour before the connection
	hs := httptest.NewServer(s)
	defer hs.Close()
	c := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http"))
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	lived := testutil.Recv(t, rec.lived, "Closed")
	require.Positive(t, lived)
	require.Less(t, lived, time.Hour, "counted from the server's start")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}

// holdClosed is an Observer whose Closed tells entered and waits for release.
type holdClosed struct {
	*recorder
	entered, release chan struct{}
}

func (h holdClosed) Closed(ctx context.Context, c *Conn, lived time.Duration, reason string, err error) {
	close(h.entered)
	<-h.release
}

// Shutdown returns only once the Observer has heard of every close, a close whose retire was
// under way when Shutdown was called too (the connection out of the registry, Closed not yet
// returned): Shutdown found no connection then and returned at once, so a program that
// flushed its telemetry after Shutdown could miss the close's span
// (TestMessageTraceOverOTLP in tracing/otelsetup failed so).
func TestShutdownWaitsForAClosedUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := holdClosed{&recorder{}, make(chan struct{}), make(chan struct{})}
		s := New(HandlerFuncs{}, Options{Observer: h, PingInterval: -1})
		dial, _ := pipeServeListener(t, s)
		c := dial()
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
		<-h.entered // a bubble: a Closed never called fails the test as a deadlock
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-shut:
			close(h.release)
			t.Fatalf("Shutdown returned (err %v) while the Observer's Closed ran", err)
		default:
		}
		close(h.release)
		require.NoError(t, <-shut)
	})
}
