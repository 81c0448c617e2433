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
// when the block was submitted (the ctx of AsyncContext or SyncContext, or for Async, Sync
// and the barriers the queue.CurrentContext of the submitting block; a ctx without a span
// takes the current block's) and handed to the block, so spans the block starts nest under
// it and a block submitted from inside a trace stays in it. Its attributes: messaging.system=dispatchkit,
// messaging.operation.name/type=process, messaging.destination.name=the label,
// dispatch.queue.kind, dispatch.queue.qos, dispatch.block.kind; when recording, the wait
// in seconds (dispatch.block.wait) and, with queue.WithCallSites, the enqueue site
// (dispatch.block.site). A panic sets status Error and error.type to the panic value's type.
// [WithNewRoots] makes each process span a new trace linked to the submitter's span, for
// work that outlives its request; [WithProducerSpans] adds a PRODUCER span per enqueue.
//
// The server traces one received message as one trace. Its spans:
//
//   - ws.handshake (SERVER, with the HTTP server attributes; INTERNAL under an HTTP server
//     span such as otelhttp's) is the connection's span: it ends with the upgrade, and OnOpen
//     runs in its trace.
//   - receive ws.conn (CONSUMER) is the root of each message's trace, with a span link to the
//     connection's ws.handshake. OnMessage's block adopts it (it starts no process span of
//     its own), so it lasts from the read until OnMessage returned and everything the message
//     causes is under it. A sampler therefore samples messages, whole. Under an unsampled
//     root nothing else is started (the SDK's ParentBased sampler would drop every child),
//     so an unsampled message costs one span start.
//   - publish ws.room (PRODUCER) is a child of the room's block that fans a Room.Broadcast out
//     (itself a child of the block that called Broadcast); it ends when every member has the
//     message in its outbound buffer.
//   - receive ws.room (CONSUMER, wsserver.RemoteObserver) is a room message another node
//     published, delivered by a wsserver.ContextBroker (natsbroker): the child of the sender's
//     publish ws.room, whose context the Broker carried (W3C trace context in natsbroker's
//     header), so one message is one trace across the nodes; a root when nothing came with
//     it. messaging.system is the Broker's (nats), dispatch.ws.broker.origin the publishing
//     node. The room's block that serves it is its child; it ends once the message is on the
//     room's queue.
//   - send ws.conn (PRODUCER) is a message queued for a connection, a child of the span that
//     sent it, ending when the message is written or given up.
//   - ws.close (INTERNAL) is the root of the connection's close trace, linked to its
//     ws.handshake, with dispatch.ws.close.code, .by (server or peer), .reason (the frame's
//     text) and .cause (the Reason constant); leaving the rooms and OnClose run in its trace,
//     and OnClose's block adopts it.
//
// The timing rule, as trace viewers check it: a child starts after its parent starts; a
// child that runs inside its parent (a Sync, a block that adopted its span, a publish)
// ends before it. Work a span hands off (an Async block, a send written by the writer) is
// its child and may end after it: the handing-off span ends when the hand-off is done.
//
// Queue labels are roles ("ws.conn"), so span names stay few; a queue's identity is its key
// (queue.WithKey): spans of a keyed queue have messaging.destination.name = the key and
// messaging.destination.template = the label, and the server's connection and room queues add
// dispatch.ws.conn.id and dispatch.ws.room. The member count of a broadcast is
// dispatch.ws.room.members. Failures use one error.type vocabulary (the wsserver Reason
// constants, full and closed for queues, a panic value's type); a normal departure (a send to
// a closing connection, a peer closing, Shutdown) is not an error status.
//
// # Metrics
//
//	dispatch.queue.wait.duration     s            histogram, by dispatch.queue.label and dispatch.block.kind
//	dispatch.queue.run.duration      s            histogram, same attributes
//	dispatch.queue.rejected          {block}      TryAsync refusals, by label and error.type (full, closed)
//	dispatch.queue.size              {block}      blocks waiting, summed over the live queues of a label
//	dispatch.ws.connection.count     {connection} open connections
//	dispatch.ws.connection.duration  s            how long connections lived, by dispatch.ws.close.cause (and error.type)
//	dispatch.ws.closed               {connection} closes, by dispatch.ws.close.cause (normal, slow_consumer, ...) and error.type
//	dispatch.ws.messages             {message}    by network.io.direction (receive, transmit)
//	dispatch.ws.io                   By           payload bytes, by network.io.direction
//	dispatch.ws.dropped              {message}    outbound messages not written, by error.type
//	dispatch.ws.refused              {request}    upgrades refused, by error.type
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
// one links the OpenTelemetry API only: no SDK, no exporter, no gRPC. [Setup] here is
// otelsetup.Setup once the program links that package (main imports it, even blank), and
// [ErrNoSetup] otherwise. An [Inspector] is an
// http.Handler with a live page and JSON of the queues it observes; it holds them weakly, so
// queues made per connection do not leak through it.
//
// The package follows the OTel instrumentation conventions (options WithTracerProvider and
// WithMeterProvider defaulting to the globals, [ScopeName] and [Version]) rather than the
// With... options of queue, because that is what OTel users look for.
package tracing
