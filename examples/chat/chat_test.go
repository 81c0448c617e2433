package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 10 * time.Second

// startChat serves the chat on a loopback port and shuts it down after the test.
func startChat(t *testing.T) (*chat, string) {
	t.Helper()
	app := newChat()
	srv := httptest.NewServer(app.routes())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		require.NoError(t, app.ws.Shutdown(ctx))
		srv.Close()
	})
	return app, srv.URL
}

type peer struct {
	t  *testing.T
	ws *websocket.Conn
}

func dial(t *testing.T, url string) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &peer{t, ws}
}

func (c *peer) send(v any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	data, _ := json.Marshal(v)
	require.NoError(c.t, c.ws.Write(ctx, websocket.MessageText, data))
}

// next reads messages until one of the given type arrives, and returns it.
func (c *peer) next(typ string) map[string]any {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		_, data, err := c.ws.Read(ctx)
		require.NoError(c.t, err, "waiting for a %q message", typ)
		var m map[string]any
		require.NoError(c.t, json.Unmarshal(data, &m))
		if m["type"] == typ {
			return m
		}
	}
}

func TestTwoClientsChatInARoom(t *testing.T) {
	_, url := startChat(t)
	ann, bob := dial(t, url), dial(t, url)
	ann.send(map[string]string{"type": "join", "room": "lobby", "nick": "ann"})
	require.Equal(t, "ann", ann.next("welcome")["nick"])
	require.Empty(t, ann.next("history")["messages"])
	ann.send(map[string]string{"type": "message", "text": "first"})
	require.Equal(t, "first", ann.next("message")["text"])

	bob.send(map[string]string{"type": "join", "room": "lobby", "nick": "bob"})
	h := bob.next("history")["messages"].([]any)
	require.Len(t, h, 1, "a newcomer gets the room's history")
	require.Equal(t, "first", h[0].(map[string]any)["text"])
	require.Equal(t, "bob joined", ann.next("system")["text"])
	for {
		p := ann.next("presence")
		if len(p["members"].([]any)) == 2 {
			require.Equal(t, []any{"ann", "bob"}, p["members"])
			break
		}
	}

	bob.send(map[string]string{"type": "message", "text": `<img src=x onerror=alert(1)>`})
	m := ann.next("message")
	require.Equal(t, "bob", m["from"])
	require.Equal(t, `<img src=x onerror=alert(1)>`, m["text"], "text is passed on as text")

	require.NoError(t, bob.ws.Close(websocket.StatusNormalClosure, "bye"))
	require.Equal(t, "bob left", ann.next("system")["text"])
}

func TestMalformedAndUnknownInputGetsAnError(t *testing.T) {
	_, url := startChat(t)
	c := dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, c.ws.Write(ctx, websocket.MessageText, []byte("{not json")))
	require.Contains(t, c.next("error")["error"], "malformed")
	c.send(map[string]string{"type": "dance"})
	require.Contains(t, c.next("error")["error"], `unknown message type "dance"`)
	c.send(map[string]string{"type": "message", "text": "hi"})
	require.Contains(t, c.next("error")["error"], "join a room first")
	c.send(map[string]string{"type": "join", "room": "bad room!"})
	require.Contains(t, c.next("error")["error"], "room name")
	c.send(map[string]string{"type": "join", "room": "ok", "nick": strings.Repeat("n", 40)})
	require.Contains(t, c.next("error")["error"], "nickname")
	c.send(map[string]string{"type": "join", "room": "ok", "nick": "zed"})
	c.next("welcome")
	c.send(map[string]string{"type": "message", "text": strings.Repeat("x", maxText+1)})
	require.Contains(t, c.next("error")["error"], "at most")
	// The connection is still fine after all that.
	c.send(map[string]string{"type": "message", "text": "still here"})
	require.Equal(t, "still here", c.next("message")["text"])
}

func TestHistoryKeepsTheLast50(t *testing.T) {
	_, url := startChat(t)
	a := dial(t, url)
	a.send(map[string]string{"type": "join", "room": "busy", "nick": "a"})
	a.next("history")
	for i := range 60 {
		a.send(map[string]any{"type": "message", "text": strings.Repeat("m", i+1)})
	}
	for range 60 {
		a.next("message")
	}
	b := dial(t, url)
	b.send(map[string]string{"type": "join", "room": "busy", "nick": "b"})
	h := b.next("history")["messages"].([]any)
	require.Len(t, h, historySize)
	require.Equal(t, strings.Repeat("m", 11), h[0].(map[string]any)["text"])
}

func TestPageIsServed(t *testing.T) {
	_, url := startChat(t)
	for _, path := range []string{"/", "/static/app.js", "/static/style.css"} {
		resp, err := http.Get(url + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}
