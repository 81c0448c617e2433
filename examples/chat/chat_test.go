package main

import (
	"context"
	"encoding/json"
	"fmt"
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
func startChat(t *testing.T, configure ...func(*chat)) (*chat, string) {
	t.Helper()
	app := newChat()
	for _, f := range configure {
		f(app)
	}
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

// chatRooms counts the chat's rooms.
func chatRooms(app *chat) int {
	var n int
	app.rooms.Sync(func(m *map[string]*room) { n = len(*m) })
	return n
}

// One client that wanders through 300 rooms leaves none behind: a room goes away with its
// last member, in the chat and in the WebSocket server.
func TestEmptyRoomsGoAway(t *testing.T) {
	app, url := startChat(t)
	c := dial(t, url)
	for i := range 300 {
		c.send(map[string]string{"type": "join", "room": fmt.Sprintf("r%d", i), "nick": "wanderer"})
		c.next("history")
	}
	require.LessOrEqual(t, chatRooms(app), 2, "the room it is in, and perhaps the last one's leave on its way")
	require.NoError(t, c.ws.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return chatRooms(app) == 0 && app.ws.Stats().Rooms == 0 },
		waitTimeout, time.Millisecond, "rooms left behind: chat %d, server %d", chatRooms(app), app.ws.Stats().Rooms)
}

// Beyond maxRooms a join into a new room is refused; rooms that exist can still be joined.
func TestRoomCap(t *testing.T) {
	app, url := startChat(t, func(a *chat) { a.maxRooms = 2 })
	a, b, c := dial(t, url), dial(t, url), dial(t, url)
	a.send(map[string]string{"type": "join", "room": "one", "nick": "a"})
	a.next("history")
	b.send(map[string]string{"type": "join", "room": "two", "nick": "b"})
	b.next("history")
	c.send(map[string]string{"type": "join", "room": "three", "nick": "c"})
	require.Contains(t, c.next("error")["error"], "too many rooms")
	c.send(map[string]string{"type": "join", "room": "one", "nick": "c"})
	require.Equal(t, "one", c.next("history")["room"])

	require.NoError(t, b.ws.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return chatRooms(app) == 1 }, waitTimeout, time.Millisecond)
	c.send(map[string]string{"type": "join", "room": "three"})
	require.Equal(t, "three", c.next("history")["room"])
}
