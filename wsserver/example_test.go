package wsserver_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

// A server that counts each connection's messages: the count is the connection's own state,
// touched only by its callbacks on its serial queue, so it needs no lock.
func ExampleServer() {
	done := make(chan struct{})
	var srv *wsserver.Server
	srv = wsserver.New(wsserver.HandlerFuncs{
		Open: func(c *wsserver.Conn) {
			c.SetValue(new(int)) // this connection's counter
			srv.Room("lobby").Join(c)
			_ = c.SendText("welcome")
		},
		Message: func(c *wsserver.Conn, m wsserver.Message) {
			n := c.Value().(*int)
			*n++ // safe: one connection's callbacks never overlap
			_ = c.SendText(fmt.Sprintf("#%d: %s", *n, m.Data))
		},
		Close: func(c *wsserver.Conn, err error) {
			fmt.Println("closed, error:", err)
			close(done)
		},
	}, wsserver.Options{})
	hs := httptest.NewServer(srv)
	defer hs.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(hs.URL, "http", "ws", 1), nil)
	if err != nil {
		panic(err)
	}
	for _, s := range []string{"hello", "world"} {
		_ = c.Write(ctx, websocket.MessageText, []byte(s))
	}
	for range 3 {
		_, b, _ := c.Read(ctx)
		fmt.Println(string(b))
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	<-done
	_ = srv.Shutdown(ctx)
	// Output:
	// welcome
	// #1: hello
	// #2: world
	// closed, error: <nil>
}

// Broadcast to a room: every member gets the message through its own outbound buffer.
func ExampleRoom_Broadcast() {
	joined := make(chan struct{}, 2)
	var srv *wsserver.Server
	srv = wsserver.New(wsserver.HandlerFuncs{
		Open: func(c *wsserver.Conn) {
			srv.Room("news").Join(c)
			joined <- struct{}{}
		},
	}, wsserver.Options{})
	hs := httptest.NewServer(srv)
	defer hs.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := strings.Replace(hs.URL, "http", "ws", 1)
	a, _, _ := websocket.Dial(ctx, url, nil)
	b, _, _ := websocket.Dial(ctx, url, nil)
	<-joined
	<-joined
	fmt.Println("members:", srv.Room("news").Len())
	srv.Room("news").Broadcast(wsserver.Text("extra!"))
	for _, c := range []*websocket.Conn{a, b} {
		_, msg, _ := c.Read(ctx)
		fmt.Println(string(msg))
	}
	a.CloseNow()
	b.CloseNow()
	_ = srv.Shutdown(ctx)
	// Output:
	// members: 2
	// extra!
	// extra!
}

// session is one connection's state in ExampleKey.
type session struct {
	user  string
	count int
}

// sessionKey is the typed slot the handler keeps each connection's session in.
var sessionKey = wsserver.NewKey[*session]("session")

// Per-connection state with a type and without a lock: a Key stores it on the connection,
// and only the connection's callbacks (one at a time, on its queue) touch it.
func ExampleKey() {
	done := make(chan struct{})
	srv := wsserver.New(wsserver.HandlerFuncs{
		Open: func(c *wsserver.Conn) {
			sessionKey.Set(c, &session{user: c.URL().Query().Get("user")})
		},
		Message: func(c *wsserver.Conn, m wsserver.Message) {
			s, _ := sessionKey.Get(c) // a *session, no type assertion
			s.count++
			_ = c.SendText(fmt.Sprintf("%s #%d: %s", s.user, s.count, m.Data))
		},
		Close: func(c *wsserver.Conn, err error) {
			s, _ := sessionKey.Get(c)
			fmt.Printf("%s sent %d\n", s.user, s.count)
			close(done)
		},
	}, wsserver.Options{})
	hs := httptest.NewServer(srv)
	defer hs.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(hs.URL, "http", "ws", 1)+"?user=ann", nil)
	if err != nil {
		panic(err)
	}
	for _, s := range []string{"hi", "bye"} {
		_ = c.Write(ctx, websocket.MessageText, []byte(s))
		_, b, _ := c.Read(ctx)
		fmt.Println(string(b))
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	<-done
	_ = srv.Shutdown(ctx)
	// Output:
	// ann #1: hi
	// ann #2: bye
	// ann sent 2
}
