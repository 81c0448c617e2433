package natsbroker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/tracing"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// spanLog is one node's in-memory span recorder; it tells waiters when a span ends.
type spanLog struct {
	mu      sync.Mutex
	ended   []sdktrace.ReadOnlySpan
	changed chan struct{}
}

func (l *spanLog) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (l *spanLog) OnEnd(s sdktrace.ReadOnlySpan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = append(l.ended, s)
	close(l.changed)
	l.changed = make(chan struct{})
}
func (l *spanLog) Shutdown(context.Context) error   { return nil }
func (l *spanLog) ForceFlush(context.Context) error { return nil }

// waitFor waits until the spans of trace id (any trace when id is invalid) named names
// have all ended (a name given twice: two of them), and returns the trace's spans.
func (l *spanLog) waitFor(t *testing.T, id trace.TraceID, names ...string) []sdktrace.ReadOnlySpan {
	t.Helper()
	timeout := time.After(wait)
	for {
		l.mu.Lock()
		var spans []sdktrace.ReadOnlySpan
		for _, s := range l.ended {
			if !id.IsValid() || s.SpanContext().TraceID() == id {
				spans = append(spans, s)
			}
		}
		changed := l.changed
		l.mu.Unlock()
		missing := false
		count := map[string]int{}
		for _, s := range spans {
			count[s.Name()]++
		}
		for _, n := range names {
			if count[n]--; count[n] < 0 {
				missing = true
			}
		}
		if !missing {
			return spans
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("within %v, trace %v did not have the spans %v; it has %v", wait, id, names, spanNames(spans))
		}
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name())
	}
	return n
}

func named(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "one %q span in %v", name, spanNames(spans))
	return found[0]
}

func attrs(s sdktrace.ReadOnlySpan) map[string]any {
	m := map[string]any{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// tracer is one node's tracing: an Observer over an SDK that records in spans.
type tracer struct {
	obs   *tracing.Observer
	spans *spanLog
}

func newTracer(t *testing.T, opts ...sdktrace.TracerProviderOption) *tracer {
	t.Helper()
	l := &spanLog{changed: make(chan struct{})}
	tp := sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(l)}, opts...)...)
	o := tracing.NewObserver(tracing.WithTracerProvider(tp))
	t.Cleanup(func() {
		require.NoError(t, o.Close())
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	return &tracer{obs: o, spans: l}
}

// connectWith is connect with a propagator (nil: the global one).
func connectWith(t *testing.T, url, node string, p propagation.TextMapPropagator) (*Broker, *events) {
	t.Helper()
	ev := &events{down: make(chan struct{}, 16), up: make(chan struct{}, 16), log: &syncBuffer{}}
	b, err := Connect(url, Options{
		Node:         node,
		Propagator:   p,
		Logger:       slog.New(slog.NewTextHandler(io.MultiWriter(ev.log, t.Output()), nil)),
		OnDisconnect: func(error) { ev.down <- struct{}{} },
		OnReconnect:  func() { ev.up <- struct{}{} },
	}, nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b, ev
}

// startTracedNode is startNode with tr's Observer for the server and its queues (none when
// tr is nil).
func startTracedNode(t *testing.T, b *Broker, tr *tracer) *node {
	t.Helper()
	n := &node{broker: b, joined: make(chan *wsserver.Conn, 16), left: make(chan *wsserver.Conn, 16)}
	opts := wsserver.Options{Broker: b}
	if tr != nil {
		opts.Observer, opts.QueueObserver = tr.obs, tr.obs
	}
	n.srv = wsserver.New(wsserver.HandlerFuncs{
		Open: func(c *wsserver.Conn) {
			n.srv.Room("lobby").Join(c)
			n.joined <- c
		},
		Message: func(c *wsserver.Conn, m wsserver.Message) { n.srv.Room("lobby").Broadcast(m) },
	}, opts)
	hs := httptest.NewServer(n.srv)
	n.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, n.srv.Shutdown(ctx))
		hs.Close()
	})
	return n
}

// One message sent on node A to a room with members on A and B is one trace across both
// nodes' recorders: B's receive ws.room (CONSUMER, messaging.system=nats, the origin node
// and the room) is the child of A's publish ws.room, and B's room block, its publish and
// its send are under it.
func TestCrossNodeMessageIsOneTrace(t *testing.T) {
	ns := startNATS(t, 0)
	ba, _ := connectWith(t, ns.ClientURL(), "node-a", propagation.TraceContext{})
	bb, _ := connectWith(t, ns.ClientURL(), "node-b", propagation.TraceContext{})
	ta, tb := newTracer(t), newTracer(t)
	a, b := startTracedNode(t, ba, ta), startTracedNode(t, bb, tb)
	ann, _ := a.client(t)
	amy, _ := a.client(t)
	bob, _ := b.client(t)
	flush(t, ba, bb)

	send(t, ann, "hello")
	for _, c := range []*websocket.Conn{ann, amy, bob} {
		require.Equal(t, "hello", read(t, c))
	}
	sa := ta.spans.waitFor(t, trace.TraceID{}, "receive ws.conn")
	recv := named(t, sa, "receive ws.conn")
	id := recv.SpanContext().TraceID()
	sa = ta.spans.waitFor(t, id, "receive ws.conn", "process ws.room", "publish ws.room", "send ws.conn", "send ws.conn")
	sb := tb.spans.waitFor(t, id, "receive ws.room", "process ws.room", "publish ws.room", "send ws.conn")
	require.Len(t, sa, 5, "A: %v", spanNames(sa))
	require.Len(t, sb, 4, "B: %v", spanNames(sb))

	pubA := named(t, sa, "publish ws.room")
	remote := named(t, sb, "receive ws.room")
	require.Equal(t, trace.SpanKindConsumer, remote.SpanKind())
	require.Equal(t, pubA.SpanContext().SpanID(), remote.Parent().SpanID(), "B's receive is the child of A's publish")
	require.True(t, remote.Parent().IsRemote())
	at := attrs(remote)
	require.Equal(t, "nats", at["messaging.system"])
	require.Equal(t, "receive", at["messaging.operation.name"])
	require.Equal(t, "receive", at["messaging.operation.type"])
	require.Equal(t, "lobby", at["messaging.destination.name"])
	require.Equal(t, "lobby", at["dispatch.ws.room"])
	require.Equal(t, "ws.room", at["messaging.destination.template"])
	require.Equal(t, "node-a", at["dispatch.ws.broker.origin"])
	require.EqualValues(t, len("hello"), at["messaging.message.body.size"])
	require.False(t, remote.EndTime().Before(remote.StartTime()))
	require.False(t, remote.StartTime().Before(pubA.StartTime()), "the receive starts after the publish started (one clock here)")

	procB := named(t, sb, "process ws.room")
	require.Equal(t, remote.SpanContext().SpanID(), procB.Parent().SpanID())
	require.Equal(t, "lobby", attrs(procB)["dispatch.ws.room"])
	pubB := named(t, sb, "publish ws.room")
	require.Equal(t, procB.SpanContext().SpanID(), pubB.Parent().SpanID())
	require.EqualValues(t, 1, attrs(pubB)["dispatch.ws.room.members"])
	sendB := named(t, sb, "send ws.conn")
	require.Equal(t, pubB.SpanContext().SpanID(), sendB.Parent().SpanID())
	require.Equal(t, codes.Unset, sendB.Status().Code)

	t.Logf("one message sent on node A, with members on A and B:\n%s", tree(append(sa, sb...), sb))
}

// tree prints spans as an indented tree, each marked with the node it was recorded on.
func tree(spans []sdktrace.ReadOnlySpan, onB []sdktrace.ReadOnlySpan) string {
	isB := map[trace.SpanID]bool{}
	for _, s := range onB {
		isB[s.SpanContext().SpanID()] = true
	}
	kids := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if !s.Parent().IsValid() {
			root = s
		}
		kids[s.Parent().SpanID()] = append(kids[s.Parent().SpanID()], s)
	}
	var b strings.Builder
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		where := "A"
		if isB[s.SpanContext().SpanID()] {
			where = "B"
		}
		fmt.Fprintf(&b, "[%s] %s%s %s", where, strings.Repeat("  ", depth), s.Name(), s.SpanKind())
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "messaging.system", "dispatch.ws.conn.id", "dispatch.ws.room", "dispatch.ws.room.members", "dispatch.ws.broker.origin":
				fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
			}
		}
		if len(s.Links()) > 0 {
			fmt.Fprintf(&b, " links=%d", len(s.Links()))
		}
		b.WriteString("\n")
		k := kids[s.SpanContext().SpanID()]
		sort.Slice(k, func(i, j int) bool { return k[i].StartTime().Before(k[j].StartTime()) })
		for _, c := range k {
			walk(c, depth+1)
		}
	}
	if root != nil {
		walk(root, 0)
	}
	return b.String()
}

// rawFrames subscribes a plain NATS connection to room's subject of b and returns the frames
// published there.
func rawFrames(t *testing.T, url string, b *Broker, room string) <-chan []byte {
	t.Helper()
	raw, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(raw.Close)
	ch := make(chan []byte, 16)
	_, err = raw.Subscribe(b.subject(room), func(m *nats.Msg) { ch <- m.Data })
	require.NoError(t, err)
	require.NoError(t, raw.Flush())
	return ch
}

// v1Header is the header a node writes without a context: what nodes before version 2 wrote.
func v1Header(node, room string, typ websocket.MessageType) []byte {
	h := append([]byte{1, byte(typ), byte(len(node))}, node...)
	h = binary.AppendUvarint(h, uint64(len(room)))
	return append(h, room...)
}

// With tracing off (no Observer), or with an Observer but no propagator installed, a
// publication carries no context: its header is the version 1 header, byte for byte. With
// both, it carries the W3C traceparent in a version 2 header; the test logs the sizes.
func TestFrameCarriesContextOnlyWhenTraced(t *testing.T) {
	ns := startNATS(t, 0)
	for _, tc := range []struct {
		name   string
		traced bool
		prop   propagation.TextMapPropagator
		want   byte
	}{
		{"no observer, propagator", false, propagation.TraceContext{}, frameV1},
		{"observer, no propagator installed", true, nil, frameV1},
		{"observer and propagator", true, propagation.TraceContext{}, frameV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := connectWith(t, ns.ClientURL(), "node-a", tc.prop)
			var tr *tracer
			if tc.traced {
				tr = newTracer(t)
			}
			n := startTracedNode(t, b, tr)
			frames := rawFrames(t, ns.ClientURL(), b, "lobby")
			ann, _ := n.client(t)
			send(t, ann, "hello")
			require.Equal(t, "hello", read(t, ann))
			f := testutil.Recv(t, frames, "the publication")
			hdr := v1Header("node-a", "lobby", websocket.MessageText)
			require.Equal(t, tc.want, f[0])
			if tc.want == frameV1 {
				require.Equal(t, append(hdr, "hello"...), f, "no context: the version 1 frame")
				t.Logf("frame %d bytes: header %d + payload %d", len(f), len(hdr), len("hello"))
				return
			}
			node, room, fields, m, err := parseFrame(f)
			require.NoError(t, err)
			require.Equal(t, "node-a", node)
			require.Equal(t, "lobby", room)
			require.Equal(t, "hello", string(m.Data))
			var kv []string
			require.NoError(t, eachField(fields, func(k, v []byte) { kv = append(kv, string(k), string(v)) }))
			require.Len(t, kv, 2)
			require.Equal(t, "traceparent", kv[0])
			require.Len(t, kv[1], 55, "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>")
			recv := named(t, tr.spans.waitFor(t, trace.TraceID{}, "publish ws.room"), "publish ws.room")
			require.Equal(t, fmt.Sprintf("00-%s-%s-01", recv.SpanContext().TraceID(), recv.SpanContext().SpanID()), kv[1],
				"the context of the sender's publish ws.room span")
			t.Logf("frame %d bytes: header %d (version 1: %d, +%d for the context) + payload %d",
				len(f), len(f)-len("hello"), len(hdr), len(f)-len("hello")-len(hdr), len("hello"))
		})
	}
}

// parseFrameV1 is how a node before version 2 read a frame (natsbroker.go as of d0b38fe):
// anything whose first byte is not 1 is "not a room message", which that node counts in
// Stats.Malformed and logs (the first time).
func parseFrameV1(frame []byte) error {
	if len(frame) < 3 || frame[0] != 1 {
		return errors.New("natsbroker: not a room message (bad header)")
	}
	return nil
}

// Frames across versions: a version 2 node reads a version 1 node's frame (a traced node
// makes its receive ws.room a root, as nothing came with it); a version 1 node refuses a
// version 2 frame as a bad header (it counts and logs it); a frame of a newer version than
// this node reads is counted in Stats.Newer, logged as such, and not delivered.
func TestFrameVersions(t *testing.T) {
	ns := startNATS(t, 0)
	bb, ev := connectWith(t, ns.ClientURL(), "node-b", propagation.TraceContext{})
	tb := newTracer(t)
	b := startTracedNode(t, bb, tb)
	bob, _ := b.client(t)
	flush(t, bb)
	raw, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer raw.Close()

	// A version 1 node's message.
	old := append(v1Header("node-old", "lobby", websocket.MessageText), "from v1"...)
	require.NoError(t, raw.Publish(bb.subject("lobby"), old))
	require.Equal(t, "from v1", read(t, bob))
	remote := named(t, tb.spans.waitFor(t, trace.TraceID{}, "receive ws.room"), "receive ws.room")
	require.False(t, remote.Parent().IsValid(), "no context came: a root")
	require.Equal(t, "node-old", attrs(remote)["dispatch.ws.broker.origin"])

	// A version 2 frame, read by a version 1 node: refused, not misread.
	v2 := appendFrame(nil, "node-a", "lobby", []string{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, wsserver.Text("x"))
	require.Error(t, parseFrameV1(v2))
	require.NoError(t, parseFrameV1(old))

	// A version 3 frame, from a node newer than this one.
	v3 := append([]byte{frameVersion + 1}, v2[1:]...)
	require.NoError(t, raw.Publish(bb.subject("lobby"), v3))
	require.NoError(t, raw.Publish(bb.subject("lobby"), v3))
	require.NoError(t, raw.Publish(bb.subject("lobby"), append(v1Header("node-old", "lobby", websocket.MessageText), "after"...)))
	require.Equal(t, "after", read(t, bob), "the newer frames were not delivered")
	st := bb.Stats()
	require.Equal(t, uint64(2), st.Newer)
	require.Zero(t, st.Malformed)
	require.Equal(t, uint64(2), st.Received)
	require.Contains(t, ev.log.String(), "from a newer node")
	require.Contains(t, ev.log.String(), "version 3, this node reads up to 2")
}

// While NATS is down, a publication refused shows in the sender's trace as a broker publish
// span with status Error; after NATS is back the trace crosses the nodes again.
func TestRefusedPublishIsAnErrorSpanInTheSendersTrace(t *testing.T) {
	ns := startNATS(t, 0)
	port := natsPort(ns)
	ba, eva := connectWith(t, ns.ClientURL(), "node-a", propagation.TraceContext{})
	bb, evb := connectWith(t, ns.ClientURL(), "node-b", propagation.TraceContext{})
	ta, tb := newTracer(t), newTracer(t)
	a, b := startTracedNode(t, ba, ta), startTracedNode(t, bb, tb)
	ann, _ := a.client(t)
	bob, _ := b.client(t)
	flush(t, ba, bb)

	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.Recv(t, eva.down, "A to notice NATS is gone")
	testutil.Recv(t, evb.down, "B to notice NATS is gone")
	send(t, ann, "while down")
	require.Equal(t, "while down", read(t, ann))
	spans := ta.spans.waitFor(t, trace.TraceID{}, "broker publish")
	failed := named(t, spans, "broker publish")
	id := failed.SpanContext().TraceID()
	spans = ta.spans.waitFor(t, id, "receive ws.conn", "process ws.room", "publish ws.room", "broker publish", "send ws.conn")
	recv := named(t, spans, "receive ws.conn")
	require.False(t, recv.Parent().IsValid(), "the sender's trace: its receive is the root")
	require.Equal(t, codes.Error, failed.Status().Code)
	require.Contains(t, failed.Status().Description, ErrDisconnected.Error())
	require.Equal(t, named(t, spans, "process ws.room").SpanContext().SpanID(), failed.Parent().SpanID())
	fa := attrs(failed)
	require.Equal(t, "broker_publish", fa["error.type"])
	require.Equal(t, "lobby", fa["dispatch.ws.room"])
	require.Contains(t, eva.log.String(), "disconnected from NATS")
	require.Equal(t, uint64(1), a.srv.Stats().BrokerDropped)

	startNATS(t, port)
	testutil.Recv(t, eva.up, "A to reconnect")
	testutil.Recv(t, evb.up, "B to reconnect")
	flush(t, ba, bb)
	send(t, ann, "after")
	require.Equal(t, "after", read(t, ann))
	require.Equal(t, "after", read(t, bob))
	remote := named(t, tb.spans.waitFor(t, trace.TraceID{}, "receive ws.room"), "receive ws.room")
	sa := ta.spans.waitFor(t, remote.SpanContext().TraceID(), "receive ws.conn", "publish ws.room")
	require.Equal(t, named(t, sa, "publish ws.room").SpanContext().SpanID(), remote.Parent().SpanID())
}

// With no propagator installed, PublishContext costs what Publish does: carrying the
// context allocates nothing and adds nothing to the frame. (The whole publications'
// allocations are logged, not compared: under -race sync.Pool drops items at random.)
func TestPublishContextWithoutPropagatorAllocatesNothingMore(t *testing.T) {
	ns := startNATS(t, 0)
	b, _ := connectWith(t, ns.ClientURL(), "node-a", propagation.NewCompositeTextMapPropagator())
	tr := newTracer(t)
	m := wsserver.Text("hello")
	ctx := tr.obs.Broadcast(context.Background(), "lobby", m, 1) // a recording publish span
	defer tr.obs.BroadcastDone(ctx, "lobby", m, wsserver.BroadcastResult{})
	require.True(t, trace.SpanFromContext(ctx).IsRecording())
	fb := &frameBuf{frame: make([]byte, 0, 256)}
	carry := testing.AllocsPerRun(1000, func() {
		fb.fields = fb.fields[:0]
		b.inject(ctx, &fb.fields)
		fb.frame = appendFrame(fb.frame[:0], b.Node(), "lobby", fb.fields, m)
	})
	require.Zero(t, carry, "no propagator: injecting and framing allocate nothing")
	require.Empty(t, fb.fields)
	require.Equal(t, append(v1Header("node-a", "lobby", websocket.MessageText), "hello"...), fb.frame)

	plain := testing.AllocsPerRun(1000, func() { require.NoError(t, b.Publish("lobby", m)) })
	withCtx := testing.AllocsPerRun(1000, func() { require.NoError(t, b.PublishContext(ctx, "lobby", m)) })
	b2, _ := connectWith(t, ns.ClientURL(), "node-b", propagation.TraceContext{})
	traced := testing.AllocsPerRun(1000, func() { require.NoError(t, b2.PublishContext(ctx, "lobby", m)) })
	t.Logf("allocations per publication: Publish %v, PublishContext with no propagator %v, with W3C trace context %v", plain, withCtx, traced)
}

// A message the sender's sampler dropped is dropped on the other node too (the traceparent
// carries the decision, and the default sampler follows its parent): a sampler keeps or
// drops whole messages across the nodes.
func TestUnsampledMessageStaysUnsampledOnTheOtherNode(t *testing.T) {
	ns := startNATS(t, 0)
	ba, _ := connectWith(t, ns.ClientURL(), "node-a", propagation.TraceContext{})
	bb, _ := connectWith(t, ns.ClientURL(), "node-b", propagation.TraceContext{})
	ta := newTracer(t, sdktrace.WithSampler(sdktrace.NeverSample()))
	tb := newTracer(t) // ParentBased(AlwaysSample), the SDK's default
	a, b := startTracedNode(t, ba, ta), startTracedNode(t, bb, tb)
	ann, _ := a.client(t)
	bob, _ := b.client(t)
	flush(t, ba, bb)
	frames := rawFrames(t, ns.ClientURL(), ba, "lobby")

	send(t, ann, "unsampled")
	require.Equal(t, "unsampled", read(t, bob))
	f := testutil.Recv(t, frames, "the publication")
	require.EqualValues(t, frameV2, f[0], "the decision travels")
	require.True(t, strings.HasSuffix(string(f[:len(f)-len("unsampled")]), "-00"), "traceparent flags 00: not sampled")
	// B served it (bob read it) and then a message of its own, which B does record.
	b.srv.Room("lobby").Queue().Sync(func() {})
	send(t, bob, "sampled")
	require.Equal(t, "sampled", read(t, bob))
	spans := tb.spans.waitFor(t, trace.TraceID{}, "receive ws.conn", "publish ws.room")
	for _, s := range spans {
		require.NotEqual(t, "receive ws.room", s.Name(), "nothing of A's unsampled message was recorded on B")
	}
}
