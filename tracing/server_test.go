package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// chatServer is a wsserver where every connection joins "lobby" and every message is
// broadcast to it, observed by r, behind wrap (nil: none).
func chatServer(t *testing.T, r *rig, wrap func(http.Handler) http.Handler) (url string, joined chan *wsserver.Conn, closed chan *wsserver.Conn) {
	t.Helper()
	joined, closed = make(chan *wsserver.Conn, 8), make(chan *wsserver.Conn, 8)
	var s *wsserver.Server
	s = wsserver.New(wsserver.HandlerFuncs{
		Open:    func(c *wsserver.Conn) { s.Room("lobby").Join(c); joined <- c },
		Message: func(c *wsserver.Conn, m wsserver.Message) { s.Room("lobby").Broadcast(m) },
	}, wsserver.Options{Observer: closedSignal{r.Observer, closed}, QueueObserver: r, Authenticate: func(req *http.Request) (any, error) {
		if req.URL.Query().Get("deny") != "" {
			return nil, errors.New("no")
		}
		return nil, nil
	}})
	var h http.Handler = s
	if wrap != nil {
		h = wrap(s)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http"), joined, closed
}

// closedSignal passes every event on to the Observer, and tells closed about a connection
// once the Observer's Closed hook (which runs after OnClose) has recorded it.
type closedSignal struct {
	*Observer
	closed chan<- *wsserver.Conn
}

func (s closedSignal) Closed(ctx context.Context, c *wsserver.Conn, lived time.Duration, reason string, err error) {
	s.Observer.Closed(ctx, c, lived, reason, err)
	s.closed <- c
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	require.NoError(t, err)
	return c
}

func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, b, err := c.Read(ctx)
	require.NoError(t, err)
	return string(b)
}

// One message broadcast to three connections: one receive span (the root of the message's
// trace, linked to the sender's handshake span), one publish span and three send spans.
func TestChatExchangeSpans(t *testing.T) {
	r := newRig(t)
	url, joined, closed := chatServer(t, r, nil)
	clients := make([]*websocket.Conn, 3)
	ids := map[string]bool{}
	var sender *wsserver.Conn
	for i := range clients {
		clients[i] = dial(t, url)
		c := testutil.Recv(t, joined, "join")
		ids[connID(c).Value.AsString()] = true
		if i == 0 {
			sender = c
		}
	}
	// Joins are queued on the room; a first message from the last client proves all three
	// are members before the real one is sent.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, clients[2].Write(ctx, websocket.MessageText, []byte("ready")))
	for _, c := range clients {
		require.Equal(t, "ready", readText(t, c))
	}
	require.NoError(t, clients[0].Write(ctx, websocket.MessageText, []byte("hello")))
	for _, c := range clients {
		require.Equal(t, "hello", readText(t, c))
	}

	handshakes := r.waitSpans(t, "ws.handshake", 3)
	receives := r.waitSpans(t, "receive ws.conn", 2)
	r.waitSpans(t, "send ws.conn", 6)
	// A publish span ends once the room has every member's outcome, which may be after the
	// clients have read the message: wait for both broadcasts' publish spans too.
	// The same holds for the room blocks around them (three joins and two broadcasts).
	r.waitSpans(t, "publish ws.room", 2)
	r.waitSpans(t, "process ws.room", 5)
	var hello sdktrace.ReadOnlySpan
	for _, s := range receives {
		if attrs(s.Attributes())["dispatch.ws.conn.id"] == connID(sender).Value.AsString() {
			hello = s
		}
	}
	require.NotNil(t, hello, "a receive span for the sender's message")
	require.Equal(t, trace.SpanKindConsumer, hello.SpanKind())
	require.Equal(t, int64(5), attrs(hello.Attributes())["messaging.message.body.size"])
	var senderHandshake sdktrace.ReadOnlySpan
	for _, h := range handshakes {
		require.Equal(t, trace.SpanKindServer, h.SpanKind())
		require.Equal(t, int64(http.StatusSwitchingProtocols), attrs(h.Attributes())["http.response.status_code"])
		if attrs(h.Attributes())["dispatch.ws.conn.id"] == connID(sender).Value.AsString() {
			senderHandshake = h
		}
	}
	require.NotNil(t, senderHandshake)
	require.False(t, hello.Parent().IsValid(), "a message's receive span is the root of its trace")
	require.Len(t, hello.Links(), 1)
	require.Equal(t, senderHandshake.SpanContext(), hello.Links()[0].SpanContext, "linked to its connection's span")

	// Everything in hello's trace: its process span, one publish, three sends.
	var inTrace []sdktrace.ReadOnlySpan
	for _, s := range r.spans.Ended() {
		if s.SpanContext().TraceID() == hello.SpanContext().TraceID() {
			inTrace = append(inTrace, s)
		}
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range inTrace {
		byID[s.SpanContext().SpanID()] = s
	}
	descends := func(s sdktrace.ReadOnlySpan, from trace.SpanID) bool {
		for p := s.Parent().SpanID(); p.IsValid(); {
			if p == from {
				return true
			}
			ps, ok := byID[p]
			if !ok {
				return false
			}
			p = ps.Parent().SpanID()
		}
		return false
	}
	var publish []sdktrace.ReadOnlySpan
	var sends []sdktrace.ReadOnlySpan
	for _, s := range inTrace {
		switch s.Name() {
		case "publish ws.room":
			if descends(s, hello.SpanContext().SpanID()) {
				publish = append(publish, s)
			}
		case "send ws.conn":
			sends = append(sends, s)
		}
	}
	require.Len(t, publish, 1)
	require.Equal(t, trace.SpanKindProducer, publish[0].SpanKind())
	require.Equal(t, "lobby", attrs(publish[0].Attributes())["dispatch.ws.room"])
	require.Equal(t, "lobby", attrs(publish[0].Attributes())["messaging.destination.name"])
	require.Equal(t, int64(3), attrs(publish[0].Attributes())["dispatch.ws.room.members"])
	require.NotContains(t, attrs(publish[0].Attributes()), "messaging.batch.message_count")
	require.Len(t, sends, 3, "one send span per member, in the message's trace")
	got := map[string]bool{}
	for _, s := range sends {
		require.Equal(t, publish[0].SpanContext().SpanID(), s.Parent().SpanID())
		require.Equal(t, trace.SpanKindProducer, s.SpanKind())
		require.Equal(t, codes.Unset, s.Status().Code)
		got[attrs(s.Attributes())["dispatch.ws.conn.id"].(string)] = true
	}
	require.Equal(t, ids, got, "a send span for each member")
	for _, s := range inTrace {
		require.NotEqual(t, "process ws.conn", s.Name(), "OnMessage's block adopts the receive span rather than starting its own")
	}

	// Metrics.
	m := r.metrics(t)
	require.Equal(t, int64(3), m["dispatch.ws.connection.count"].(metricdata.Sum[int64]).DataPoints[0].Value)
	byDir := map[string]int64{}
	for _, dp := range m["dispatch.ws.messages"].(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("network.io.direction")
		byDir[v.AsString()] = dp.Value
	}
	require.Equal(t, map[string]int64{"receive": 2, "transmit": 6}, byDir)
	bytesByDir := map[string]int64{}
	for _, dp := range m["dispatch.ws.io"].(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("network.io.direction")
		bytesByDir[v.AsString()] = dp.Value
	}
	require.Equal(t, map[string]int64{"receive": 10, "transmit": 30}, bytesByDir)

	for _, c := range clients {
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	}
	for range clients {
		testutil.Recv(t, closed, "the Closed hook")
	}
	m = r.metrics(t)
	require.Equal(t, int64(0), m["dispatch.ws.connection.count"].(metricdata.Sum[int64]).DataPoints[0].Value)
	closes := m["dispatch.ws.closed"].(metricdata.Sum[int64]).DataPoints
	require.Len(t, closes, 1)
	reason, _ := closes[0].Attributes.Value("dispatch.ws.close.cause")
	require.Equal(t, wsserver.ReasonNormal, reason.AsString())
	require.False(t, closes[0].Attributes.HasValue("error.type"), "a normal close is not an error")
	require.Equal(t, int64(3), closes[0].Value)
	require.Equal(t, uint64(3), m["dispatch.ws.connection.duration"].(metricdata.Histogram[float64]).DataPoints[0].Count)
}

// A refused upgrade ends its handshake span with its status and error.type (status Error
// only for a 5xx, as the HTTP server conventions say) and is counted by reason.
func TestRefusedHandshake(t *testing.T) {
	r := newRig(t)
	url, _, _ := chatServer(t, r, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, url+"?deny=1", nil)
	require.Error(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	h := r.waitSpans(t, "ws.handshake", 1)[0]
	require.Equal(t, codes.Unset, h.Status().Code, "a 4xx is the client's error, not the server's")
	require.Equal(t, int64(http.StatusUnauthorized), attrs(h.Attributes())["http.response.status_code"])
	require.Equal(t, "unauthorized", attrs(h.Attributes())["error.type"])
	dps := r.metrics(t)["dispatch.ws.refused"].(metricdata.Sum[int64]).DataPoints
	require.Len(t, dps, 1)
	require.Equal(t, int64(1), dps[0].Value)
	why, _ := dps[0].Attributes.Value("error.type")
	require.Equal(t, "unauthorized", why.AsString())
}

// Under an HTTP server span (what otelhttp.NewHandler makes), the handshake is its INTERNAL
// child, and the request span ends with the upgrade, not with the connection.
func TestUnderHTTPServerSpan(t *testing.T) {
	r := newRig(t)
	requestEnded := make(chan struct{}, 4)
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			ctx, span := r.tracerForTest().Start(req.Context(), "GET /ws", trace.WithSpanKind(trace.SpanKindServer))
			next.ServeHTTP(w, req.WithContext(ctx))
			span.End()
			requestEnded <- struct{}{}
		})
	}
	url, joined, _ := chatServer(t, r, wrap)
	c := dial(t, url)
	defer c.CloseNow()
	testutil.Recv(t, joined, "join")
	testutil.Recv(t, requestEnded, "the request span's end while the connection is open")
	req := r.waitSpans(t, "GET /ws", 1)[0]
	h := r.waitSpans(t, "ws.handshake", 1)[0]
	require.Equal(t, trace.SpanKindInternal, h.SpanKind())
	require.Equal(t, req.SpanContext().SpanID(), h.Parent().SpanID())
}

// A message sent to a closed connection is a normal departure: its send span says why it was
// not written but is not an error; the drop is counted by error.type.
func TestDroppedSend(t *testing.T) {
	r := newRig(t)
	url, joined, closed := chatServer(t, r, nil)
	c := dial(t, url)
	conn := testutil.Recv(t, joined, "join")
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	testutil.Recv(t, closed, "the Closed hook")
	require.ErrorIs(t, conn.SendText("late"), wsserver.ErrClosed)
	var failed sdktrace.ReadOnlySpan
	for _, s := range r.waitSpans(t, "send ws.conn", 1) {
		failed = s
	}
	require.Equal(t, codes.Unset, failed.Status().Code)
	require.Equal(t, wsserver.ReasonClosed, attrs(failed.Attributes())["dispatch.ws.drop.reason"])
	require.NotContains(t, attrs(failed.Attributes()), "error.type")
	dps := r.metrics(t)["dispatch.ws.dropped"].(metricdata.Sum[int64]).DataPoints
	require.Len(t, dps, 1)
	reason, _ := dps[0].Attributes.Value("error.type")
	require.Equal(t, wsserver.ReasonClosed, reason.AsString())
}

// A broker failure shows in the trace of the broadcast that met it, and in the metrics.
func TestBrokerFailed(t *testing.T) {
	r := newRig(t)
	q := queue.NewSerial("ws.room", queue.WithObserver(r))
	defer q.Close(context.Background())
	q.Sync(func() { r.BrokerFailed("lobby", "publish", errors.New("nats: connection closed")) })
	r.BrokerFailed("lobby", "subscribe", errors.New("nats: timeout"))
	block := r.waitSpans(t, "process ws.room", 1)[0]
	pub := r.waitSpans(t, "broker publish", 1)[0]
	require.Equal(t, block.SpanContext().SpanID(), pub.Parent().SpanID())
	require.Equal(t, codes.Error, pub.Status().Code)
	require.Equal(t, "nats: connection closed", pub.Status().Description)
	require.Equal(t, "lobby", attrs(pub.Attributes())["dispatch.ws.room"])
	require.Equal(t, "broker_publish", attrs(pub.Attributes())["error.type"])
	require.Len(t, r.waitSpans(t, "broker subscribe", 1), 1)
	m := r.metrics(t)
	ops := map[string]int64{}
	for _, dp := range m["dispatch.ws.broker.errors"].(metricdata.Sum[int64]).DataPoints {
		v, _ := dp.Attributes.Value("dispatch.ws.broker.operation")
		ops[v.AsString()] = dp.Value
	}
	require.Equal(t, map[string]int64{"publish": 1, "subscribe": 1}, ops)
	drops := m["dispatch.ws.dropped"].(metricdata.Sum[int64]).DataPoints
	require.Len(t, drops, 1)
	why, _ := drops[0].Attributes.Value("error.type")
	require.Equal(t, "broker", why.AsString())
}

// A connection's span is its handshake (SERVER, with the HTTP server attributes); OnOpen runs
// in its trace. Its close is a trace of its own, ws.close, linked to it, recording the code,
// who closed and why; OnClose and the rooms it leaves run in that trace. A close the server
// decided on a fault of the peer's is an error; a peer leaving is not.
func TestConnectionSpans(t *testing.T) {
	r := newRig(t)
	url, joined, closed := chatServer(t, r, nil)
	c := dial(t, url)
	conn := testutil.Recv(t, joined, "join")
	id := connID(conn).Value.AsString()
	// OnOpen queued the Join; once its block ran, the close has a room to leave (a close
	// that came first would find the connection in no room, and no Leave to trace).
	r.waitSpans(t, "process ws.room", 1)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	// Invalid UTF-8 in a text message: the server closes with 1007.
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte{0xff, 0xfe}))
	_, _, err := c.Read(ctx) // answers the server's close frame
	require.Equal(t, websocket.StatusInvalidFramePayloadData, websocket.CloseStatus(err))
	testutil.Recv(t, closed, "the Closed hook")

	h := r.waitSpans(t, "ws.handshake", 1)[0]
	require.Equal(t, trace.SpanKindServer, h.SpanKind())
	ha := attrs(h.Attributes())
	require.Equal(t, http.MethodGet, ha["http.request.method"])
	require.Equal(t, "http", ha["url.scheme"])
	require.Equal(t, "/", ha["url.path"])
	require.Equal(t, "127.0.0.1", ha["server.address"])
	require.Contains(t, ha, "server.port")
	require.Equal(t, "127.0.0.1", ha["client.address"])
	require.Equal(t, id, ha["dispatch.ws.conn.id"])

	open := r.waitSpans(t, "process ws.conn", 1)[0]
	require.Equal(t, h.SpanContext().SpanID(), open.Parent().SpanID(), "OnOpen runs in the connection's trace")
	require.Equal(t, id, attrs(open.Attributes())["dispatch.ws.conn.id"], "a connection queue's span names the connection")
	require.Equal(t, id, attrs(open.Attributes())["messaging.destination.name"])
	join := r.waitSpans(t, "process ws.room", 1)[0]
	require.Equal(t, open.SpanContext().SpanID(), join.Parent().SpanID(), "the Join OnOpen made")
	require.Equal(t, "lobby", attrs(join.Attributes())["messaging.destination.name"])
	require.Equal(t, "lobby", attrs(join.Attributes())["dispatch.ws.room"])

	cl := r.waitSpans(t, "ws.close", 1)[0]
	require.False(t, cl.Parent().IsValid(), "the close is a trace of its own")
	require.Len(t, cl.Links(), 1)
	require.Equal(t, h.SpanContext(), cl.Links()[0].SpanContext)
	ca := attrs(cl.Attributes())
	require.Equal(t, id, ca["dispatch.ws.conn.id"])
	require.Equal(t, int64(websocket.StatusInvalidFramePayloadData), ca["dispatch.ws.close.code"])
	require.Equal(t, "server", ca["dispatch.ws.close.by"])
	require.Equal(t, wsserver.ReasonInvalidUTF8, ca["dispatch.ws.close.cause"])
	require.Equal(t, wsserver.ReasonInvalidUTF8, ca["error.type"])
	require.Equal(t, codes.Error, cl.Status().Code)
	require.Contains(t, ca, "dispatch.block.wait", "OnClose's block adopted the close span")
	leave := r.waitSpans(t, "process ws.room", 2)[1]
	require.Equal(t, cl.SpanContext().SpanID(), leave.Parent().SpanID(), "leaving the room is in the close's trace")
	require.False(t, leave.StartTime().Before(cl.StartTime()))

	m := r.metrics(t)
	closes := m["dispatch.ws.closed"].(metricdata.Sum[int64]).DataPoints
	require.Len(t, closes, 1)
	why, _ := closes[0].Attributes.Value("error.type")
	require.Equal(t, wsserver.ReasonInvalidUTF8, why.AsString())
}

// holdFinished is a queue Observer that passes every event on, but, once armed, holds the
// Finished hook of a connection queue's block until release is closed: the moment after the
// block itself (OnClose and the server's retire) has run.
type holdFinished struct {
	*rig
	armed   atomic.Bool
	release chan struct{}
}

func (h *holdFinished) Finished(q *queue.Queue, ctx context.Context, b queue.BlockInfo) {
	if q.Label() == "ws.conn" && h.armed.Load() {
		<-h.release
	}
	h.rig.Finished(q, ctx, b)
}

// Shutdown returns only once the Observer heard of the last close, so a program that
// flushes its telemetry after Shutdown has the close's span: it must have ended by then even
// though OnClose's block, which adopted it, has not yet been seen to finish (its queue
// Observer's Finished hook comes after the block). It used to end only there, so a flush
// right after Shutdown could miss it (TestMessageTraceOverOTLP failed once in CI).
func TestTheCloseSpanHasEndedWhenShutdownReturns(t *testing.T) {
	r := newRig(t)
	hold := &holdFinished{rig: r, release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(hold.release) }) }
	t.Cleanup(release)
	s := wsserver.New(wsserver.HandlerFuncs{Open: func(*wsserver.Conn) {}}, wsserver.Options{Observer: r.Observer, QueueObserver: hold})
	hs := httptest.NewServer(s)
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	require.NoError(t, err)
	defer c.CloseNow()
	r.waitSpans(t, "process ws.conn", 1) // OnOpen's block has finished: the next is OnClose's
	hold.armed.Store(true)
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	require.NoError(t, s.Shutdown(ctx))
	require.Len(t, r.ended("ws.close"), 1, "the close span ended before Shutdown returned")
	release()
}
