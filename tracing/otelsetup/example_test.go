package otelsetup_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"os/signal"

	"github.com/dispatchkit/dispatchkit/tracing"
	"github.com/dispatchkit/dispatchkit/tracing/otelsetup"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// A program configures the SDK from the OTEL_* environment once, and gives one Observer to
// its server and its queues.
func ExampleSetup() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	shutdown, err := otelsetup.Setup(ctx, "chat")
	if err != nil {
		log.Fatal(err)
	}
	defer shutdown(context.Background())

	obs := tracing.NewObserver() // the global providers Setup installed
	srv := wsserver.New(wsserver.HandlerFuncs{
		Message: func(c *wsserver.Conn, m wsserver.Message) { _ = c.Send(m) },
	}, wsserver.Options{Observer: obs, QueueObserver: obs})
	http.Handle("/ws", srv)
	log.Fatal(http.ListenAndServe("localhost:8080", nil))
}
