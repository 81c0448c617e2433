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
