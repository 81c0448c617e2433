// Package natsbroker is a wsserver.Broker over NATS: several server processes ("nodes")
// behind a load balancer share their rooms, so that a broadcast on one node reaches the
// room's members on every node.
//
// Each room is a NATS subject, Prefix + "." + the room's name in base64url. A publication
// carries a small header before the payload: a version, the WebSocket message type, the
// origin node, the room and, when traced, the publisher's trace context. A node subscribes to a room's subject while it has members in it
// (wsserver's rooms do that), and NATS keeps the messages of one publisher on one subject in
// order, so every node sees a room's broadcasts from a given node in the order they were
// made. The connection is made with NoEcho, and the origin in the header is checked too, so
// a node never gets its own publications back.
//
// # Trace context
//
// The Broker is a wsserver.ContextBroker: a Server with an Observer publishes through
// PublishContext, and the header of each publication then carries what the OpenTelemetry
// propagator (Options.Propagator, default the program's global one) injects of the
// publisher's context: its W3C traceparent (and tracestate, baggage) with the propagators
// otelsetup.Setup installs. The other nodes extract it and hand it to their Server, whose
// Observer (the tracing package's) makes the delivery a receive ws.room span (CONSUMER,
// messaging.system=nats) that continues the sender's trace. With no propagator installed, or
// no Observer on the publishing Server, nothing is added: the frame is the version 1 frame
// of the nodes before trace propagation, byte for byte (a traceparent adds 69 bytes).
//
// The header is versioned: version 1 carries no context, version 2 carries it. A node reads
// both, and drops a frame of a newer version than it knows with an error log and a count
// (Stats.Newer) rather than misread it. A node from before version 2 drops version 2 frames
// as malformed (counted in its Stats.Malformed, logged): in a rolling upgrade, upgrade every
// node before turning the propagator on, or give the upgraded nodes a propagator that
// carries nothing (propagation.NewCompositeTextMapPropagator()) until then.
//
// NATS core is at-most-once. When the connection to NATS is lost, rooms keep serving the
// members of their own node, the broker reconnects (nats.go's reconnect, forever by
// default) and resubscribes, and what is published meanwhile is refused at once (no
// reconnect buffer) and counted as dropped, in Stats and in the server's
// ServerStats.BrokerDropped. Messages already written to the socket when it broke may be
// lost without being counted: NATS core has no acknowledgement.
package natsbroker
