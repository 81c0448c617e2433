package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

// spanLog is a span processor that keeps every ended span and counts the started ones, so a
// test can wait until nothing is in flight.
type spanLog struct {
	mu      sync.Mutex
	started int
	ended   []sdktrace.ReadOnlySpan
	changed chan struct{} // closed and replaced on every change
}

func newSpanLog() *spanLog { return &spanLog{changed: make(chan struct{})} }

func (l *spanLog) OnStart(context.Context, sdktrace.ReadWriteSpan) {
	l.mu.Lock()
	l.started++
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *spanLog) OnEnd(s sdktrace.ReadOnlySpan) {
	l.mu.Lock()
	l.ended = append(l.ended, s)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *spanLog) Shutdown(context.Context) error   { return nil }
func (l *spanLog) ForceFlush(context.Context) error { return nil }

// waitFor waits until cond holds over the ended spans (and whether every started span has
// ended), failing after waitTimeout.
func (l *spanLog) waitFor(t *testing.T, what string, cond func(ended []sdktrace.ReadOnlySpan, quiet bool) bool) []sdktrace.ReadOnlySpan {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		l.mu.Lock()
		ended, quiet, ch := append([]sdktrace.ReadOnlySpan(nil), l.ended...), l.started == len(l.ended), l.changed
		l.mu.Unlock()
		if cond(ended, quiet) {
			return ended
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("waiting for %s: %d spans ended, quiet=%v", what, len(ended), quiet)
		}
	}
}

// tracedChat installs a tracer provider recording into a spanLog (as otelsetup.Setup installs
// one) and starts the chat on it.
func tracedChat(t *testing.T, opts ...sdktrace.TracerProviderOption) (*chat, string, *spanLog) {
	t.Helper()
	log := newSpanLog()
	tp := sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(log)}, opts...)...)
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	app, url := startChat(t)
	return app, url, log
}

// joinAll dials n peers into room "lobby" (the first is ann) and returns them once each is
// a member, with each peer's connection id by nick.
func joinAll(t *testing.T, app *chat, url string, n int) ([]*peer, map[string]string) {
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = dial(t, url)
		nick := fmt.Sprintf("p%d", i)
		if i == 0 {
			nick = "ann"
		}
		peers[i].send(map[string]string{"type": "join", "room": "lobby", "nick": nick})
		peers[i].next("history") // a member once its history arrives
	}
	// Connection ids count from 1 in the order the upgrades happened: one at a time here.
	ids := map[string]string{"ann": "1"}
	for i := 1; i < n; i++ {
		ids[fmt.Sprintf("p%d", i)] = fmt.Sprint(i + 1)
	}
	require.Equal(t, n, app.ws.Stats().Connections)
	return peers, ids
}

func attrMap(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// payload is what peer.send writes for a chat message of text.
func payload(text string) int {
	b, _ := json.Marshal(map[string]string{"type": "message", "text": text})
	return len(b)
}

// traceOf returns the spans of the trace whose root is the receive span of the message of
// size bytes sent by connection id, root first.
func traceOf(spans []sdktrace.ReadOnlySpan, conn string, size int) []sdktrace.ReadOnlySpan {
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		a := attrMap(s.Attributes())
		if s.Name() == "receive ws.conn" && a["dispatch.ws.conn.id"] == conn && a["messaging.message.body.size"] == int64(size) {
			root = s
		}
	}
	if root == nil {
		return nil
	}
	out := []sdktrace.ReadOnlySpan{root}
	for _, s := range spans {
		if s != root && s.SpanContext().TraceID() == root.SpanContext().TraceID() {
			out = append(out, s)
		}
	}
	return out
}

// asynchronous reports whether s is work handed off by its parent, which may end after it:
// a block an Async queued, or a message's send (written by the connection's writer).
// Everything else runs inside its parent's time.
func asynchronous(s sdktrace.ReadOnlySpan) bool {
	if s.Name() == "send ws.conn" {
		return true
	}
	k := attrMap(s.Attributes())["dispatch.block.kind"]
	return strings.HasPrefix(s.Name(), "process ") && (k == "async" || k == "barrier")
}

// requireNoClockSkew checks Jaeger's clock-skew rule for every parent/child pair among
// spans: a child starts after its parent starts and, unless it is asynchronous, ends before
// its parent ends.
func requireNoClockSkew(t *testing.T, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	byID := map[oteltrace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	pairs := 0
	for _, s := range spans {
		p, ok := byID[s.Parent().SpanID()]
		if !ok {
			continue
		}
		pairs++
		require.False(t, s.StartTime().Before(p.StartTime()), "%s starts before its parent %s", s.Name(), p.Name())
		if !asynchronous(s) {
			require.False(t, s.EndTime().After(p.EndTime()), "%s ends after its parent %s", s.Name(), p.Name())
		}
	}
	require.NotZero(t, pairs)
}

// One chat message is exactly one trace: its receive span is the root (linked to the
// sender's connection span), and under it the room's block, the server room's block, the
// publish and a send to every member, each naming its connection or room; no span lies
// outside its parent's time.
func TestChatMessageIsOneTrace(t *testing.T) {
	for _, members := range []int{2, 20} {
		t.Run(fmt.Sprint(members), func(t *testing.T) {
			app, url, log := tracedChat(t)
			peers, ids := joinAll(t, app, url, members)
			text := fmt.Sprintf("hello %d", members)
			peers[0].send(map[string]string{"type": "message", "text": text})
			for _, p := range peers {
				p.next("message")
			}
			want := 4 + members // receive, process chat.room, process ws.room, publish, sends
			var tr []sdktrace.ReadOnlySpan
			spans := log.waitFor(t, "the message's trace", func(ended []sdktrace.ReadOnlySpan, _ bool) bool {
				tr = traceOf(ended, ids["ann"], payload(text))
				return len(tr) >= want
			})
			require.Len(t, tr, want, "exactly these spans in the message's trace")

			var handshake sdktrace.ReadOnlySpan
			for _, s := range spans {
				if s.Name() == "ws.handshake" && attrMap(s.Attributes())["dispatch.ws.conn.id"] == ids["ann"] {
					handshake = s
				}
			}
			require.NotNil(t, handshake, "the sender's connection span")

			byName := map[string][]sdktrace.ReadOnlySpan{}
			for _, s := range tr {
				byName[s.Name()] = append(byName[s.Name()], s)
			}
			recv := tr[0]
			require.Equal(t, oteltrace.SpanKindConsumer, recv.SpanKind())
			require.False(t, recv.Parent().IsValid(), "the message's first span is a root")
			require.Len(t, recv.Links(), 1)
			require.Equal(t, handshake.SpanContext(), recv.Links()[0].SpanContext, "linked to the connection's span")
			ra := attrMap(recv.Attributes())
			require.Equal(t, "receive", ra["messaging.operation.type"])
			require.Equal(t, "dispatchkit", ra["messaging.system"])
			require.Contains(t, ra, "dispatch.block.wait", "OnMessage's block adopted it")

			child := func(name string, parent sdktrace.ReadOnlySpan, kind oteltrace.SpanKind) sdktrace.ReadOnlySpan {
				t.Helper()
				require.Len(t, byName[name], 1, name)
				s := byName[name][0]
				require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "%s is a child of %s", name, parent.Name())
				require.Equal(t, kind, s.SpanKind(), name)
				return s
			}
			room := child("process chat.room", recv, oteltrace.SpanKindConsumer)
			require.Equal(t, "lobby", attrMap(room.Attributes())["messaging.destination.name"], "the chat room's queue names the room")
			require.Equal(t, "chat.room", attrMap(room.Attributes())["messaging.destination.template"])
			wsRoom := child("process ws.room", room, oteltrace.SpanKindConsumer)
			wa := attrMap(wsRoom.Attributes())
			require.Equal(t, "chat:lobby", wa["messaging.destination.name"])
			require.Equal(t, "chat:lobby", wa["dispatch.ws.room"])
			pub := child("publish ws.room", wsRoom, oteltrace.SpanKindProducer)
			pa := attrMap(pub.Attributes())
			require.Equal(t, "chat:lobby", pa["messaging.destination.name"])
			require.Equal(t, int64(members), pa["dispatch.ws.room.members"])
			require.NotContains(t, pa, "messaging.batch.message_count")

			got := map[string]bool{}
			for _, s := range byName["send ws.conn"] {
				require.Equal(t, pub.SpanContext().SpanID(), s.Parent().SpanID())
				require.Equal(t, oteltrace.SpanKindProducer, s.SpanKind())
				require.Equal(t, codes.Unset, s.Status().Code)
				got[attrMap(s.Attributes())["dispatch.ws.conn.id"].(string)] = true
			}
			wantIDs := map[string]bool{}
			for _, id := range ids {
				wantIDs[id] = true
			}
			require.Equal(t, wantIDs, got, "a send to every member")
			requireNoClockSkew(t, tr)
			if members == 2 {
				printTree(t, tr)
			}
		})
	}
}

// printTree logs a trace as an indented tree (go test -v shows it).
func printTree(t *testing.T, spans []sdktrace.ReadOnlySpan) {
	kids := map[oteltrace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		kids[s.Parent().SpanID()] = append(kids[s.Parent().SpanID()], s)
	}
	var b strings.Builder
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		start := s.StartTime().Sub(spans[0].StartTime())
		fmt.Fprintf(&b, "%s%s %s  +%v %v", strings.Repeat("  ", depth), s.Name(), s.SpanKind(), start.Round(time.Microsecond), s.EndTime().Sub(s.StartTime()).Round(time.Microsecond))
		for _, k := range []string{"dispatch.ws.conn.id", "messaging.destination.name", "dispatch.ws.room.members"} {
			if v, ok := attrMap(s.Attributes())[k]; ok {
				fmt.Fprintf(&b, " %s=%v", k, v)
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
	walk(spans[0], 0)
	t.Logf("one chat message:\n%s", b.String())
}

// Twenty clients that join, send a message each and leave make no one-span fragment: every
// trace is a connection's open (handshake and OnOpen), a message, or a connection's close
// (the close, OnClose, the rooms it leaves), and every parent/child pair keeps the
// clock-skew rule.
func TestChatSessionHasNoFragments(t *testing.T) {
	app, url, log := tracedChat(t)
	peers, _ := joinAll(t, app, url, 20)
	for i, p := range peers {
		p.send(map[string]string{"type": "message", "text": fmt.Sprint("m", i)})
	}
	for _, p := range peers {
		for range peers {
			p.next("message")
		}
	}
	closes := func(ended []sdktrace.ReadOnlySpan) int {
		n := 0
		for _, s := range ended {
			if s.Name() == "ws.close" {
				n++
			}
		}
		return n
	}
	// One at a time: a client closing while the server writes to it may be seen as a lost
	// connection (1006), which is not what this test is about.
	for i, p := range peers {
		require.NoError(t, p.ws.Close(4000, "bye"))
		log.waitFor(t, "the close traced", func(ended []sdktrace.ReadOnlySpan, _ bool) bool { return closes(ended) == i+1 })
	}
	spans := log.waitFor(t, "nothing in flight", func(ended []sdktrace.ReadOnlySpan, quiet bool) bool {
		return quiet && closes(ended) == 20
	})
	traces := map[oteltrace.TraceID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		traces[s.SpanContext().TraceID()] = append(traces[s.SpanContext().TraceID()], s)
	}
	roots := map[string]int{}
	for _, tr := range traces {
		var names []string
		var root sdktrace.ReadOnlySpan
		for _, s := range tr {
			names = append(names, s.Name())
			if !s.Parent().IsValid() {
				require.Nil(t, root, "one root per trace: %v", names)
				root = s
			}
		}
		require.NotNil(t, root, "a trace without its root: %v", names)
		require.Greater(t, len(tr), 1, "a one-span fragment: %v", names)
		roots[root.Name()]++
		requireNoClockSkew(t, tr)
	}
	require.Equal(t, map[string]int{"ws.handshake": 20, "receive ws.conn": 40, "ws.close": 20}, roots)

	for _, s := range spans {
		if s.Name() != "ws.close" {
			continue
		}
		a := attrMap(s.Attributes())
		if a["dispatch.ws.close.code"] == int64(1006) {
			// Seen now and then under -race: a write to the closing peer fails, or the reader
			// ends without its close frame (a wsserver matter, noted in issue 15's report). Traced as a lost
			// connection, in a trace of its own all the same.
			require.Contains(t, []any{wsserver.ReasonReadError, wsserver.ReasonWriteError}, a["dispatch.ws.close.cause"])
			continue
		}
		require.Equal(t, int64(4000), a["dispatch.ws.close.code"], "%v", a)
		require.Equal(t, "peer", a["dispatch.ws.close.by"])
		require.Equal(t, "bye", a["dispatch.ws.close.reason"])
		require.Equal(t, wsserver.ReasonPeerClose, a["dispatch.ws.close.cause"])
		require.Equal(t, codes.Unset, s.Status().Code, "a peer leaving is not an error")
		require.Len(t, s.Links(), 1, "linked to the connection's span")
	}
	for _, s := range spans {
		why := attrMap(s.Attributes())["error.type"]
		if why == wsserver.ReasonReadError || why == wsserver.ReasonWriteError {
			continue // the race above
		}
		require.NotEqual(t, codes.Error, s.Status().Code, "%s: nothing failed in this session", s.Name())
	}
}

// ratioIDs makes trace IDs that a TraceIDRatioBased(0.01) sampler keeps (low half zero) or
// drops (low half all ones), alternately, so a 1% sampler's choices are known in advance.
type ratioIDs struct {
	mu   sync.Mutex
	n    uint64
	span uint64
}

func (g *ratioIDs) NewIDs(context.Context) (oteltrace.TraceID, oteltrace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	var tid oteltrace.TraceID
	binary.BigEndian.PutUint64(tid[:8], g.n)
	if g.n%2 == 1 {
		binary.BigEndian.PutUint64(tid[8:], ^uint64(0))
	}
	return tid, g.newSpanID()
}

func (g *ratioIDs) NewSpanID(context.Context, oteltrace.TraceID) oteltrace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.newSpanID()
}

func (g *ratioIDs) newSpanID() oteltrace.SpanID {
	g.span++
	var sid oteltrace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.span)
	return sid
}

// Under a 1% parent-based sampler each message is kept or dropped whole: a kept message has
// its complete tree, a dropped one leaves no span at all.
func TestSamplerKeepsOrDropsWholeMessages(t *testing.T) {
	app, url, log := tracedChat(t,
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))),
		sdktrace.WithIDGenerator(&ratioIDs{}))
	peers, ids := joinAll(t, app, url, 2)
	const n = 6
	for i := range n {
		peers[0].send(map[string]string{"type": "message", "text": strings.Repeat("s", i+1)})
		for _, p := range peers {
			p.next("message")
		}
	}
	spans := log.waitFor(t, "nothing in flight", func(_ []sdktrace.ReadOnlySpan, quiet bool) bool { return quiet })
	kept := 0
	for i := range n {
		tr := traceOf(spans, ids["ann"], payload(strings.Repeat("s", i+1)))
		if tr == nil {
			continue
		}
		kept++
		require.Len(t, tr, 4+2, "a kept message has its whole tree")
	}
	require.Equal(t, n/2, kept, "every other message's trace id is sampled")
	byID := map[oteltrace.SpanID]bool{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = true
	}
	for _, s := range spans {
		if s.Parent().IsValid() {
			require.True(t, byID[s.Parent().SpanID()], "%s recorded without its parent: a message split by the sampler", s.Name())
		}
	}
}
