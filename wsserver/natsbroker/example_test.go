package natsbroker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/dispatchkit/dispatchkit/wsserver"
	"github.com/dispatchkit/dispatchkit/wsserver/natsbroker"
)

// Two nodes, each with its own Broker on one NATS server (here in-process; in production a
// nats-server beside them): a broadcast on node 1 reaches the client of node 2.
func ExampleConnect() {
	ns, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(5 * time.Second)

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	joined := make(chan struct{}, 2)
	node := func() (*wsserver.Server, *natsbroker.Broker) {
		b, err := natsbroker.Connect(ns.ClientURL(), natsbroker.Options{Logger: quiet})
		if err != nil {
			panic(err)
		}
		var srv *wsserver.Server
		srv = wsserver.New(wsserver.HandlerFuncs{
			Open: func(c *wsserver.Conn) { srv.Room("news").Join(c); joined <- struct{}{} },
		}, wsserver.Options{Broker: b})
		return srv, b
	}
	n1, b1 := node()
	n2, b2 := node()
	h1, h2 := httptest.NewServer(n1), httptest.NewServer(n2)
	defer h1.Close()
	defer h2.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c2, _, _ := websocket.Dial(ctx, strings.Replace(h2.URL, "http", "ws", 1), nil)
	<-joined
	n2.Room("news").Len() // the room on node 2 has subscribed...
	_ = b2.Flush(ctx)     // ...and NATS has the subscription

	news1 := n1.Room("news")
	news1.Broadcast(wsserver.Text("extra!")) // node 1 has no member: it publishes all the same
	_, msg, _ := c2.Read(ctx)
	fmt.Println("node 2's client got:", string(msg))
	news1.Len() // the publication's block on node 1 has returned: counted, not just sent
	fmt.Println("node 1 published:", n1.Stats().BrokerPublished)

	c2.CloseNow()
	_ = n1.Shutdown(ctx)
	_ = n2.Shutdown(ctx)
	_ = b1.Close()
	_ = b2.Close()
	// Output:
	// node 2's client got: extra!
	// node 1 published: 1
}
