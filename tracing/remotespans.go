package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

// The span of a room message another node published, and its attributes.
const (
	spanRemote = "receive ws.room"
	keyOrigin  = "dispatch.ws.broker.origin" // the node that published the message
)

var remoteFixed = trace.WithAttributes(attrOpReceive, attrOpTypeRecv, roomTemplate)

var _ wsserver.RemoteObserver = (*Observer)(nil)

// RemoteReceived (wsserver.RemoteObserver) starts a CONSUMER span, receive ws.room, for a
// message another node published to room and this node's Broker delivered: a child of the
// publisher's context the Broker carried (the sender's publish ws.room, so that one message is
// one trace across the nodes), or a new root when none came. messaging.system is the Broker's
// ("nats"), dispatch.ws.broker.origin the publishing node. The room's block that serves the
// message is its child; it ends when the message was handed to the room's queue
// (RemoteDelivered).
func (o *Observer) RemoteReceived(ctx context.Context, room string, m wsserver.Message, from wsserver.Remote) context.Context {
	if o == nil || !o.spans {
		return ctx
	}
	ctx, span := o.tracer.Start(ctx, spanRemote, receiveKind, remoteFixed)
	if span.IsRecording() {
		system := from.System
		if system == "" {
			system = "unknown"
		}
		span.SetAttributes(attribute.String("messaging.system", system),
			attribute.String(keyDestination, room), attribute.String(keyRoom, room),
			attribute.String(keyOrigin, from.Node), attribute.Int(keyBodySize, len(m.Data)))
	}
	return ctx
}

// RemoteDelivered (wsserver.RemoteObserver) ends the receive ws.room span: the message is on
// the room's queue.
func (o *Observer) RemoteDelivered(ctx context.Context, room string, m wsserver.Message) {
	if o == nil || !o.spans {
		return
	}
	trace.SpanFromContext(ctx).End()
}
