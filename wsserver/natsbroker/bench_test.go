package natsbroker

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/dispatchkit/dispatchkit/tracing"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// discard is a span processor that drops every span: the benchmarks measure what
// propagation and the spans cost on the nodes, not an exporter's work.
type discard struct{}

func (discard) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discard) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discard) Shutdown(context.Context) error                  { return nil }
func (discard) ForceFlush(context.Context) error                { return nil }

// BenchmarkRemoteDelivery is the CPU of one room message from node A to node B through a
// real (in-process) NATS server, as a wsserver.Server uses the Broker:
//
//   - off: no Observer on either node: Publish and Subscribe, a version 1 frame;
//   - observer, no propagator: Observers on both nodes but no propagator installed:
//     PublishContext carries nothing (a version 1 frame) and B's receive ws.room is a root;
//   - traced: W3C trace context: A injects its publish span's traceparent (a version 2
//     frame), B extracts it and its receive ws.room span continues A's trace (every span
//     sampled and recorded, then discarded).
//
// Up to 4096 messages are in flight. It reports the frame's size as frame-B. Run it on a
// quiet machine: go test -run '^$' -bench RemoteDelivery -count 10 ./wsserver/natsbroker/
func BenchmarkRemoteDelivery(b *testing.B) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(wait) {
		b.Fatal("the NATS server did not start")
	}
	for _, bc := range []struct {
		name   string
		traced bool
		prop   propagation.TextMapPropagator
	}{
		{"off", false, nil},
		{"observer-no-propagator", true, propagation.NewCompositeTextMapPropagator()},
		{"traced", true, propagation.TraceContext{}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchRemote(b, ns.ClientURL(), bc.traced, bc.prop) })
	}
}

func benchRemote(b *testing.B, url string, traced bool, prop propagation.TextMapPropagator) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ba, err := Connect(url, Options{Node: "node-a", Logger: quiet, Propagator: prop})
	if err != nil {
		b.Fatal(err)
	}
	defer ba.Close()
	bb, err := Connect(url, Options{Node: "node-b", Logger: quiet, Propagator: prop})
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(discard{}))
	defer tp.Shutdown(context.Background())
	obsA := tracing.NewObserver(tracing.WithTracerProvider(tp))
	obsB := tracing.NewObserver(tracing.WithTracerProvider(tp))
	defer obsA.Close()
	defer obsB.Close()

	tokens := make(chan struct{}, 4096)
	var got atomic.Int64
	done := make(chan struct{})
	var n int64
	arrived := func() {
		<-tokens
		if got.Add(1) == n {
			close(done)
		}
	}
	if traced {
		err = bb.SubscribeContext("lobby", func(ctx context.Context, m wsserver.Message, from wsserver.Remote) {
			ctx = obsB.RemoteReceived(ctx, "lobby", m, from)
			obsB.RemoteDelivered(ctx, "lobby", m)
			arrived()
		})
	} else {
		err = bb.Subscribe("lobby", func(wsserver.Message) { arrived() })
	}
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*wait)
	defer cancel()
	if err := bb.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	m := wsserver.Text("a chat message of some sixty bytes, as people type them.")
	var sender context.Context
	if traced {
		// A's publish ws.room span, as the room's block has it when it publishes.
		sender = obsA.Broadcast(context.Background(), "lobby", m, 1)
		defer obsA.BroadcastDone(sender, "lobby", m, wsserver.BroadcastResult{})
	}
	var fb frameBuf
	if traced {
		ba.inject(sender, &fb.fields)
	}
	frameBytes := len(appendFrame(nil, ba.Node(), "lobby", fb.fields, m))

	n = int64(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tokens <- struct{}{}
		if traced {
			err = ba.PublishContext(sender, "lobby", m)
		} else {
			err = ba.Publish("lobby", m)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("%d of %d messages arrived", got.Load(), b.N)
	}
	b.ReportMetric(float64(frameBytes), "frame-B")
}
