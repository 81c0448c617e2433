package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/dispatchkit/dispatchkit/tracing"
)

// The inspector at /debug/dispatch lists the chat's queues and its server.
func TestInspectorIsMounted(t *testing.T) {
	_, url := startChat(t)
	ann := dial(t, url)
	ann.send(map[string]string{"type": "join", "room": "lobby", "nick": "ann"})
	ann.next("welcome")
	ann.send(map[string]string{"type": "message", "text": "hi"})
	ann.next("message")

	resp, err := http.Get(url + "/debug/dispatch?format=json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var s tracing.Snapshot
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	labels := map[string]tracing.LabelFigures{}
	for _, l := range s.Labels {
		labels[l.Label] = l
	}
	require.Equal(t, 1, labels["ws.conn"].Queues)
	require.NotZero(t, labels["ws.conn"].Executed, "OnOpen and OnMessage ran on the connection's queue")
	require.Equal(t, 1, labels["chat.room"].Queues)
	require.Contains(t, labels, "ws.handlers")
	require.Equal(t, 1, s.Servers["chat"].Connections)

	page, err := http.Get(url + "/debug/dispatch")
	require.NoError(t, err)
	page.Body.Close()
	require.Equal(t, "text/html; charset=utf-8", page.Header.Get("Content-Type"))
}

// With a tracer provider installed (as tracing.Setup does), one chat message shows its
// receive, the handler's block and a send to each member of the room.
func TestChatMessageIsTraced(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	_, url := startChat(t)
	ann, bob := dial(t, url), dial(t, url)
	ann.send(map[string]string{"type": "join", "room": "lobby", "nick": "ann"})
	ann.next("welcome")
	bob.send(map[string]string{"type": "join", "room": "lobby", "nick": "bob"})
	bob.next("welcome")
	ann.send(map[string]string{"type": "message", "text": "traced"})
	ann.next("message")
	bob.next("message")

	names := map[string]int{}
	for _, s := range exp.GetSpans() {
		names[s.Name]++
	}
	require.Equal(t, 2, names["ws.handshake"])
	require.GreaterOrEqual(t, names["receive ws.conn"], 3)
	require.GreaterOrEqual(t, names["process ws.conn"], 3)
	require.NotZero(t, names["process chat.room"])
	require.NotZero(t, names["send ws.conn"])
}
