package tracing

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

func getJSON(t *testing.T, url string) Snapshot {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var s Snapshot
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	return s
}

// The inspector serves the figures of the queues it observes as JSON, and its page.
func TestInspectorServesQueues(t *testing.T) {
	in := NewInspector()
	srv := wsserver.New(wsserver.HandlerFuncs{}, wsserver.Options{})
	defer srv.Shutdown(context.Background())
	in.WatchServer("chat", srv)
	ts := httptest.NewServer(in)
	defer ts.Close()

	busy := queue.NewSerial("busy", queue.WithObserver(in), queue.WithCallSites(true))
	idle := queue.NewConcurrent("idle", queue.WithObserver(in), queue.WithTarget(queue.Global(queue.Utility)))
	defer busy.Close(context.Background())
	defer idle.Close(context.Background())
	for range 10 {
		busy.Async(func() {})
	}
	busy.Sync(func() {}) // the ten have run; a Sync is not counted in Stats.Executed
	busy.Suspend()
	defer busy.Resume() // before Close, which waits for a suspended queue
	for range 4 {
		busy.Async(func() {})
	}

	s := getJSON(t, ts.URL+"?format=json")
	require.Equal(t, 2, s.Total)
	require.Len(t, s.Queues, 2)
	b := s.Queues[0] // the busiest first
	require.Equal(t, "busy", b.Label)
	require.True(t, b.Serial)
	require.Equal(t, 4, b.Pending)
	require.Equal(t, uint64(10), b.Executed)
	require.True(t, b.Suspended)
	require.Greater(t, b.WaitP99, 0.0)
	require.GreaterOrEqual(t, b.WaitP99, b.WaitP50)
	require.Contains(t, b.Site, "inspector_test.go")
	i := s.Queues[1]
	require.Equal(t, "idle", i.Label)
	require.Equal(t, queue.Global(queue.Utility).Label(), i.Target)
	require.Equal(t, []LabelFigures{
		{Label: "busy", Queues: 1, Pending: 4, Executed: 10, Syncs: 1},
		{Label: "idle", Queues: 1},
	}, s.Labels)
	require.Contains(t, s.Servers, "chat")
	require.GreaterOrEqual(t, s.Executor.GOMAXPROCS, 1)

	// The Accept header works too; the page is self-contained.
	req, _ := http.NewRequest(http.MethodGet, ts.URL, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	resp, err = http.Get(ts.URL)
	require.NoError(t, err)
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, string(page), "<canvas")
	require.NotContains(t, string(page), "://", "no CDN: nothing loaded from elsewhere")
	resp, err = http.Post(ts.URL, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

// The inspector lists only the busiest queues unless asked for all, forgets closed queues,
// and never keeps a dropped queue alive.
func TestInspectorForgetsQueues(t *testing.T) {
	in := NewInspector()
	var qs []*queue.Queue
	for range busiest + 5 {
		qs = append(qs, queue.NewSerial("ws.conn", queue.WithObserver(in)))
	}
	s := in.Snapshot(false)
	require.Equal(t, busiest+5, s.Total)
	require.Len(t, s.Queues, busiest)
	require.Len(t, in.Snapshot(true).Queues, busiest+5)
	require.Equal(t, []LabelFigures{{Label: "ws.conn", Queues: busiest + 5}}, s.Labels)
	for _, q := range qs[:5] {
		require.NoError(t, q.Close(context.Background()))
	}
	require.Equal(t, busiest, in.Snapshot(true).Total)
	qs = nil // the rest are dropped without Close
	deadline := time.Now().Add(wait)
	for in.Snapshot(true).Total != 0 {
		require.True(t, time.Now().Before(deadline), "dropped queues still listed after %v", wait)
		collectGarbage()
	}
}

// Through an Observer built WithInspector, the inspector sees the same queues.
func TestObserverFeedsInspector(t *testing.T) {
	in := NewInspector()
	r := newRig(t, WithInspector(in))
	q := queue.NewSerial("both", queue.WithObserver(r))
	defer q.Close(context.Background())
	q.Async(func() {})
	q.Sync(func() {})
	s := in.Snapshot(true)
	require.Equal(t, 1, s.Total)
	require.Equal(t, uint64(1), s.Queues[0].Executed)
	r.waitSpans(t, "process both", 1)
}

// The wait histogram's quantiles land in the right power-of-two bucket.
func TestWaitQuantiles(t *testing.T) {
	var h waitHistogram
	require.Zero(t, h.quantile(0.5))
	for range 98 {
		h.add(3 * time.Microsecond) // bucket [2, 4) µs
	}
	h.add(5 * time.Millisecond) // [4.096, 8.192) ms
	h.add(5 * time.Millisecond)
	p50 := h.quantile(0.5)
	require.GreaterOrEqual(t, p50, 2e-6)
	require.Less(t, p50, 4e-6)
	p99 := h.quantile(0.99)
	require.GreaterOrEqual(t, p99, 4.096e-3)
	require.Less(t, p99, 8.192e-3)
	h.add(-time.Second) // a clock step back counts as no wait
	h.add(time.Hour)
	require.Equal(t, uint32(1), h.b[0].Load())
	require.Equal(t, uint32(1), h.b[waitBuckets-1].Load())
}

// The inspector counts Syncs, shows a queue's key, serves every JSON key in one style
// (snake_case), keeps a history for its charts, and drops a connection's queue once the
// connection has closed (through the Observer's Closed hook), not when the GC runs.
func TestInspectorKeysSyncsHistoryAndClosedConnections(t *testing.T) {
	in := NewInspector()
	r := newRig(t, WithInspector(in))
	url, joined, closed := chatServer(t, r, nil)
	g := queue.NewGuarded(0, queue.WithLabel("rooms"), queue.WithKey("main"), queue.WithObserver(r))
	defer g.Queue().Close(context.Background())
	g.Sync(func(*int) {})
	g.Sync(func(*int) {})

	c := dial(t, url)
	testutil.Recv(t, joined, "join")
	ts := httptest.NewServer(in)
	defer ts.Close()
	resp, err := http.Get(ts.URL + "?format=json&all=1")
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&raw))
	resp.Body.Close()
	snake := regexp.MustCompile(`^[a-z0-9_]+$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !strings.HasSuffix(path, ".labels") || !strings.Contains(path, "history") {
					require.Regexp(t, snake, k, "key %q at %s", k, path)
				}
				walk(path+"."+k, x)
			}
		case []any:
			for _, x := range v {
				walk(path+"[]", x)
			}
		}
	}
	walk("", raw)
	require.Contains(t, raw, "history")

	s := in.Snapshot(true)
	byLabel := map[string]LabelFigures{}
	for _, l := range s.Labels {
		byLabel[l.Label] = l
	}
	require.Equal(t, uint64(2), byLabel["rooms"].Syncs, "Syncs are counted")
	keys := map[string]string{}
	for _, q := range s.Queues {
		keys[q.Label] = q.Key
	}
	require.Equal(t, "main", keys["rooms"])
	require.Equal(t, "lobby", keys["ws.room"])
	require.NotEmpty(t, keys["ws.conn"], "a connection's queue is keyed by its id")
	require.NotEmpty(t, s.History)
	require.Contains(t, s.History[len(s.History)-1].Labels, "rooms")

	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	testutil.Recv(t, closed, "the Closed hook")
	require.Zero(t, byLabelOf(in.Snapshot(true))["ws.conn"].Queues, "a closed connection's queue is gone at once")
}

func byLabelOf(s Snapshot) map[string]LabelFigures {
	m := map[string]LabelFigures{}
	for _, l := range s.Labels {
		m[l.Label] = l
	}
	return m
}

// An inspector nobody reads does not keep the figures of dropped queues: rooms and
// connections that come and go (examples/chat makes a queue per room) leave no trace.
func TestInspectorSweepsDroppedQueues(t *testing.T) {
	in := NewInspector()
	entries := func() int {
		n := 0
		in.queues.Range(func(any, any) bool { n++; return true })
		return n
	}
	for range 20 {
		for range 1000 {
			queue.NewSerial("chat.room", queue.WithObserver(in)) // dropped at once
		}
		collectGarbage()
	}
	require.LessOrEqual(t, entries(), 2*sweepEvery, "figures of dropped queues kept")

	var live liveSet
	for range 20 {
		for range 1000 {
			live.add(queue.NewSerial("ws.conn"))
		}
		collectGarbage()
	}
	require.LessOrEqual(t, live.len(), 2*sweepEvery, "the Observer's live set keeps dropped queues")
}
