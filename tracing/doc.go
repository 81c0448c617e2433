// Package tracing shows what dispatchkit's queues and WebSocket server do, with
// OpenTelemetry traces and metrics and a live inspector page.
//
// An [Observer] implements both queue.Observer and wsserver.Observer:
//
//	obs := tracing.NewObserver() // the global providers; or WithTracerProvider, WithMeterProvider
//	q := queue.NewSerial("db", queue.WithObserver(obs))
//	srv := wsserver.New(h, wsserver.Options{Observer: obs, QueueObserver: obs})
//
// # Spans
//
// Following the OTel messaging conventions for push-based consumers, every block a queue
// runs gets a CONSUMER span "process <queue label>", started from the context captured
// when the block was submitted (the ctx of AsyncContext or SyncContext, or for Async the
// queue.CurrentContext of the submitting block) and handed to the block, so spans the block
// starts nest under it. Its attributes: messaging.system=dispatchkit,
// messaging.operation.name/type=process, messaging.destination.name=the label,
// dispatch.queue.kind, dispatch.queue.qos, dispatch.block.kind; when recording, the wait
// in seconds (dispatch.block.wait) and, with queue.WithCallSites, the enqueue site
// (dispatch.block.site). A panic sets status Error and error.type to the panic value's type.
// [WithNewRoots] makes each process span a new trace linked to the submitter's span, for
// work that outlives its request; [WithProducerSpans] adds a PRODUCER span per enqueue.
//
// The server's spans: ws.handshake for the upgrade (SERVER, or INTERNAL under an HTTP server
// span such as otelhttp's; it ends when the upgrade does, never lasting the connection);
// receive ws.conn (CONSUMER) per message, child of the handshake, around OnMessage;
// publish ws.room (PRODUCER) per Room.Broadcast; send ws.conn (PRODUCER) per message queued
// for a connection, child of the span that sent it, ending when the message is written or
// dropped. One chat message thus shows its whole fan-out in one trace. Queue labels are
// roles ("ws.conn"), so span names and metric attributes stay few; connection ids appear
// only as the attribute dispatch.ws.conn.id.
//
// # Metrics
//
//	dispatch.queue.wait.duration     s            histogram, by dispatch.queue.label and dispatch.block.kind
//	dispatch.queue.run.duration      s            histogram, same attributes
//	dispatch.queue.rejected          {block}      TryAsync refusals, by label and error.type (full, closed)
//	dispatch.queue.size              {block}      blocks waiting, summed over the live queues of a label
//	dispatch.ws.connection.count     {connection} open connections
//	dispatch.ws.connection.duration  s            how long connections lived, by dispatch.ws.reason
//	dispatch.ws.closed               {connection} closes, by dispatch.ws.reason (normal, slow_consumer, ...)
//	dispatch.ws.messages             {message}    by network.io.direction (receive, transmit)
//	dispatch.ws.io                   By           payload bytes, by network.io.direction
//	dispatch.ws.dropped              {message}    outbound messages not written, by dispatch.ws.reason
//	dispatch.ws.refused              {request}    upgrades refused, by dispatch.ws.reason
//	dispatch.ws.broker.errors        {error}      failed Broker operations, by dispatch.ws.broker.operation
//
// Durations use buckets from 10 µs to 10 s. The hot paths use precomputed attribute sets
// and the instruments' Enabled guards.
//
// # Cost
//
// A queue without an observer pays one nil check per block. An Observer over the no-op
// providers (what otelsetup.Setup installs for a signal exported nowhere) is inert: queues
// and servers made with it skip it, and cost what they cost without one. Over a no-op TracerProvider
// alone it starts no span. Figures are in BENCHMARKS.md.
//
// # Setup and the inspector
//
// Package otelsetup (tracing/otelsetup) configures the SDK from the OTEL_* environment for
// programs (libraries never set globals). It is a package of its own so that importing this
// one links the OpenTelemetry API only: no SDK, no exporter, no gRPC. An [Inspector] is an
// http.Handler with a live page and JSON of the queues it observes; it holds them weakly, so
// queues made per connection do not leak through it.
//
// The package follows the OTel instrumentation conventions (options WithTracerProvider and
// WithMeterProvider defaulting to the globals, [ScopeName] and [Version]) rather than the
// With... options of queue, because that is what OTel users look for.
package tracing
