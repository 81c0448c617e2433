package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Two chat nodes on one NATS server, tracing as otelsetup.Setup makes them (the global
// provider, W3C trace context): a message said on node A is one trace that goes on on node B,
// under B's receive ws.room, down to the send to B's member. Both nodes record into one
// log here, as two processes exporting to one Jaeger would. go test -v prints the tree (the
// README shows it).
func TestCrossNodeChatMessageIsOneTrace(t *testing.T) {
	log := newSpanLog()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(log))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	ns := startNATS(t)
	a, b := startNode(t, ns.ClientURL(), time.Hour), startNode(t, ns.ClientURL(), time.Hour)
	ann, bob := dial(t, a.url), dial(t, b.url)
	ann.send(map[string]string{"type": "join", "room": "lobby", "nick": "ann"})
	ann.presenceIs("ann")
	bob.send(map[string]string{"type": "join", "room": "lobby", "nick": "bob"})
	bob.presenceIs("ann", "bob")
	ann.presenceIs("ann", "bob")

	const text = "hello from node A"
	ann.send(map[string]string{"type": "message", "text": text})
	require.Equal(t, text, bob.next("message")["text"])
	require.Equal(t, text, ann.next("message")["text"])

	// ann is connection 1 on A (bob is 1 on B too, but sent nothing of this size).
	var tr []sdktrace.ReadOnlySpan
	log.waitFor(t, "the message's trace on both nodes", func(ended []sdktrace.ReadOnlySpan, _ bool) bool {
		tr = traceOf(ended, "1", payload(text))
		n := map[string]int{}
		for _, s := range tr {
			n[s.Name()]++
		}
		// Every span of the tree, the room blocks (which end after their publish) included.
		return n["receive ws.room"] == 1 && n["publish ws.room"] == 2 && n["send ws.conn"] == 2 &&
			n["process ws.room"] == 2 && n["process chat.room"] >= 1
	})
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range tr {
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	require.Len(t, byName["process ws.room"], 2, "the room's block on A and on B")
	remote := byName["receive ws.room"][0]
	parent := func(s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
		for _, p := range tr {
			if p.SpanContext().SpanID() == s.Parent().SpanID() {
				return p
			}
		}
		t.Fatalf("%s has no parent in the trace", s.Name())
		return nil
	}
	require.Equal(t, "publish ws.room", parent(remote).Name(), "B's receive is the child of A's publish")
	require.Equal(t, oteltrace.SpanKindConsumer, remote.SpanKind())
	ra := attrMap(remote.Attributes())
	require.Equal(t, "nats", ra["messaging.system"])
	require.Equal(t, "chat:lobby", ra["dispatch.ws.room"])
	require.Equal(t, a.broker.Node(), ra["dispatch.ws.broker.origin"])
	require.Equal(t, "process ws.room", parent(parent(remote)).Name())
	require.Equal(t, "process chat.room", parent(parent(parent(remote))).Name())
	require.Equal(t, tr[0], parent(parent(parent(parent(remote)))), "under the sender's receive ws.conn")
	var onB []sdktrace.ReadOnlySpan
	for _, s := range tr {
		for p := s; p.Parent().IsValid(); p = parent(p) {
			if p == remote {
				onB = append(onB, s)
				break
			}
		}
	}
	require.Len(t, onB, 4, "B: receive ws.room, process ws.room, publish ws.room, send ws.conn")
	for _, s := range tr {
		if s != tr[0] {
			require.False(t, s.StartTime().Before(parent(s).StartTime()), "%s starts before its parent", s.Name())
		}
	}
	t.Logf("one chat message, said on node A, heard on node B:\n%s", nodeTree(tr, onB))
}

// nodeTree prints a trace as an indented tree, each span marked with its node.
func nodeTree(spans, onB []sdktrace.ReadOnlySpan) string {
	isB := map[oteltrace.SpanID]bool{}
	for _, s := range onB {
		isB[s.SpanContext().SpanID()] = true
	}
	kids := map[oteltrace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		kids[s.Parent().SpanID()] = append(kids[s.Parent().SpanID()], s)
	}
	var b strings.Builder
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		node := "A"
		if isB[s.SpanContext().SpanID()] {
			node = "B"
		}
		fmt.Fprintf(&b, "%s  %s%s %s  +%v %v", node, strings.Repeat("  ", depth), s.Name(), s.SpanKind(),
			s.StartTime().Sub(spans[0].StartTime()).Round(time.Microsecond), s.EndTime().Sub(s.StartTime()).Round(time.Microsecond))
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "messaging.system", "dispatch.ws.conn.id", "messaging.destination.name", "dispatch.ws.room.members", "dispatch.ws.broker.origin":
				if kv.Key == "messaging.system" && kv.Value.AsString() == "dispatchkit" {
					continue
				}
				fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
			}
		}
		if len(s.Links()) > 0 {
			fmt.Fprintf(&b, " (linked to its connection)")
		}
		b.WriteString("\n")
		k := kids[s.SpanContext().SpanID()]
		sort.Slice(k, func(i, j int) bool { return k[i].StartTime().Before(k[j].StartTime()) })
		for _, c := range k {
			walk(c, depth+1)
		}
	}
	walk(spans[0], 0)
	return b.String()
}
