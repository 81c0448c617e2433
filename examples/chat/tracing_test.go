package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
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

// With a tracer provider installed (as otelsetup.Setup does), one chat message shows its
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
	ann.next("history") // a member once the history arrives (the welcome may come first)
	bob.send(map[string]string{"type": "join", "room": "lobby", "nick": "bob"})
	bob.next("history")
	ann.send(map[string]string{"type": "message", "text": "traced"})
	ann.next("message")
	bob.next("message")

	// The message's trace: its receive span, and below it a send to each of the two members.
	var trace tracetest.SpanStubs
	require.Eventually(t, func() bool {
		trace = messageTrace(exp.GetSpans(), `"traced"`)
		n := 0
		for _, s := range trace {
			if s.Name == "send ws.conn" {
				n++
			}
		}
		return n == 2
	}, waitTimeout, time.Millisecond, "a send span for each member, ended once written")
	names := map[string]int{}
	for _, s := range trace {
		names[s.Name]++
	}
	require.Equal(t, 1, names["receive ws.conn"], "OnMessage's block adopts it")
	require.Equal(t, 1, names["process chat.room"], "the room's block that keeps history and fans out")
	require.Equal(t, 1, names["process ws.room"], "the server room's block")
	require.Equal(t, 1, names["publish ws.room"])

	// CHAT_TRACE_SVG=docs/trace.svg go test -run TestChatMessageIsTraced ./examples/chat draws
	// the README's picture of it.
	if path := os.Getenv("CHAT_TRACE_SVG"); path != "" {
		require.NoError(t, os.WriteFile(path, waterfall(trace), 0o644))
	}
}

// messageTrace returns the spans under the receive span of the message whose payload
// contains text (found by its body size and the trace's content), root first.
func messageTrace(spans tracetest.SpanStubs, text string) tracetest.SpanStubs {
	children := map[oteltrace.SpanID][]tracetest.SpanStub{}
	for _, s := range spans {
		children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
	}
	var out tracetest.SpanStubs
	var walk func(s tracetest.SpanStub)
	walk = func(s tracetest.SpanStub) {
		out = append(out, s)
		kids := children[s.SpanContext.SpanID()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].StartTime.Before(kids[j].StartTime) })
		for _, k := range kids {
			walk(k)
		}
	}
	for _, s := range spans {
		if s.Name != "receive ws.conn" {
			continue
		}
		for _, kv := range s.Attributes {
			// {"type":"message","text":"traced"} is 35 bytes.
			if kv.Key == "messaging.message.body.size" && kv.Value.AsInt64() == int64(len(`{"text":`+text+`,"type":"message"}`)) {
				walk(s)
				return out
			}
		}
	}
	return nil
}

// waterfall draws spans (root first, depth-first) as an SVG timeline, as a trace viewer
// such as Jaeger shows them.
func waterfall(spans tracetest.SpanStubs) []byte {
	depth := map[oteltrace.SpanID]int{}
	start, end := spans[0].StartTime, spans[0].EndTime
	for _, s := range spans {
		if s.EndTime.After(end) {
			end = s.EndTime
		}
	}
	total := float64(end.Sub(start))
	const width, labelW, rowH = 980, 330, 26
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="system-ui, sans-serif" font-size="13">`,
		width, (len(spans)+2)*rowH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/><text x="8" y="18" font-weight="600">One chat message, %s end to end</text>`,
		end.Sub(start).Round(time.Microsecond))
	colors := map[oteltrace.SpanKind]string{oteltrace.SpanKindConsumer: "#3559e0", oteltrace.SpanKindProducer: "#e0683a", oteltrace.SpanKindInternal: "#2a9d6f"}
	for i, s := range spans {
		d := 0
		if i > 0 {
			d = depth[s.Parent.SpanID()] + 1
		}
		depth[s.SpanContext.SpanID()] = d
		y := (i + 1) * rowH
		x0 := labelW + (width-labelW-90)*float64(s.StartTime.Sub(start))/total
		w := max((width-labelW-90)*float64(s.EndTime.Sub(s.StartTime))/total, 2)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s <tspan fill="#6b7385">%s</tspan></text>`, 8+d*16, y+17, s.Name, s.SpanKind)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="16" rx="2" fill="%s"/>`, x0, y+5, w, colors[s.SpanKind])
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#6b7385">%s</text>`, x0+w+4, y+17, s.EndTime.Sub(s.StartTime).Round(time.Microsecond))
	}
	fmt.Fprintf(&b, `<text x="8" y="%d" fill="#6b7385">receive ws.conn is the root of the message's trace, linked to its connection's span; a send lasts until its message is written.</text></svg>`,
		(len(spans)+1)*rowH+18)
	return []byte(b.String())
}
