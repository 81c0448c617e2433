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

// Two servers ("nodes") share their rooms through a Broker: a broadcast on one reaches the
// members connected to the other. A LocalBus links the nodes of one process; across
// processes, use natsbroker. Each node's room subscribes when it gains its first member and
// unsubscribes when it loses its last.
func ExampleBroker() {
	bus := wsserver.NewLocalBus()
	joined := make(chan struct{}, 2)
	node := func() *wsserver.Server {
		var srv *wsserver.Server
		srv = wsserver.New(wsserver.HandlerFuncs{
			Open: func(c *wsserver.Conn) {
				srv.Room("news").Join(c)
				joined <- struct{}{}
			},
		}, wsserver.Options{Broker: bus.Broker()})
		return srv
	}
	n1, n2 := node(), node()
	h1, h2 := httptest.NewServer(n1), httptest.NewServer(n2)
	defer h1.Close()
	defer h2.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, _, _ := websocket.Dial(ctx, strings.Replace(h1.URL, "http", "ws", 1), nil)
	b, _, _ := websocket.Dial(ctx, strings.Replace(h2.URL, "http", "ws", 1), nil)
	<-joined
	<-joined
	fmt.Println("members here:", n1.Room("news").Len(), "and there:", n2.Room("news").Len())
	fmt.Println("nodes with members:", bus.Subscribers("news"))

	n1.Room("news").Broadcast(wsserver.Text("extra!"))
	for _, c := range []*websocket.Conn{a, b} {
		_, msg, _ := c.Read(ctx)
		fmt.Println(string(msg))
	}
	fmt.Println("published:", n1.Stats().BrokerPublished, "received there:", n2.Stats().BrokerReceived)
	a.CloseNow()
	b.CloseNow()
	_ = n1.Shutdown(ctx)
	_ = n2.Shutdown(ctx)
	// Output:
	// members here: 1 and there: 1
	// nodes with members: 2
	// extra!
	// extra!
	// published: 1 received there: 1
}
