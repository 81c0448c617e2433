package tracing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// Span names and attributes of the server. Every connection queue has the role label
// "ws.conn", so names stay few; the connection id is only an attribute.
const (
	spanHandshake = "ws.handshake"
	spanReceive   = "receive ws.conn"
	spanSend      = "send ws.conn"
	spanBroadcast = "publish ws.room"

	keyConnID   = "dispatch.ws.conn.id"
	keyRoom     = "dispatch.ws.room"
	keyBodySize = "messaging.message.body.size"
	keyMembers  = "messaging.batch.message_count"
)

var (
	wsDest         = attribute.String(keyDestination, "ws.conn")
	roomDest       = attribute.String(keyDestination, "ws.room")
	attrOpReceive  = attribute.String("messaging.operation.name", "receive")
	attrOpTypeRecv = attribute.String("messaging.operation.type", "receive")
	attrOpPublish  = attribute.String("messaging.operation.name", "publish")
	attrProtocol   = attribute.String("network.protocol.name", "websocket")
	receiveKind    = trace.WithSpanKind(trace.SpanKindConsumer)
	producerKind   = trace.WithSpanKind(trace.SpanKindProducer)
	receiveFixed   = trace.WithAttributes(attrSystem, attrOpReceive, attrOpTypeRecv, wsDest)
	sendFixed      = trace.WithAttributes(attrSystem, attrOpSend, attrOpTypeSend, wsDest)
	broadcastFixed = trace.WithAttributes(attrSystem, attrOpPublish, attrOpTypeSend, roomDest)
)

// sendSpanKey carries a send span from Sent to Written or Dropped.
type sendSpanKey struct{}

// Handshake starts the connection's root span, ws.handshake: SERVER kind, or INTERNAL under
// an HTTP server span (otelhttp's). It ends when the upgrade succeeds or is refused, so it
// never lasts the connection's lifetime; the connection's message spans are its children.
func (o *Observer) Handshake(ctx context.Context, r *http.Request) context.Context {
	if o == nil {
		return ctx
	}
	if !o.spans {
		return ctx
	}
	kind := trace.SpanKindServer
	if trace.SpanContextFromContext(ctx).IsValid() {
		kind = trace.SpanKindInternal
	}
	attrs := []attribute.KeyValue{attrProtocol, attribute.String("url.path", r.URL.Path)}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, attribute.String("client.address", host))
	}
	ctx, _ = o.tracer.Start(ctx, spanHandshake, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return ctx
}

// Refused ends the handshake span with an error and counts the refusal by reason.
func (o *Observer) Refused(ctx context.Context, r *http.Request, status int, reason string) {
	if o == nil {
		return
	}
	if o.m.refused.Enabled(ctx) {
		o.m.refused.Add(ctx, 1, reasonOf(reason).add...)
	}
	if !o.spans {
		return
	}
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", status), attribute.String(keyErrorType, reason))
		span.SetStatus(codes.Error, reason)
	}
	span.End()
}

// Opened ends the handshake span and counts the connection.
func (o *Observer) Opened(ctx context.Context, c *wsserver.Conn) {
	if o == nil {
		return
	}
	if o.m.conns.Enabled(ctx) {
		o.m.conns.Add(ctx, 1)
	}
	if !o.spans {
		return
	}
	span := trace.SpanFromContext(ctx)
	if span.IsRecording() {
		span.SetAttributes(connID(c), attribute.Int("http.response.status_code", http.StatusSwitchingProtocols))
	}
	span.End()
}

// Closed records how long the connection lived and why it closed.
func (o *Observer) Closed(ctx context.Context, c *wsserver.Conn, lived time.Duration, reason string, err error) {
	if o == nil {
		return
	}
	r := reasonOf(reason)
	if o.m.conns.Enabled(ctx) {
		o.m.conns.Add(ctx, -1)
	}
	if o.m.connDur.Enabled(ctx) {
		o.m.connDur.Record(ctx, lived.Seconds(), r.record...)
	}
	if o.m.closed.Enabled(ctx) {
		o.m.closed.Add(ctx, 1, r.add...)
	}
}

// Received starts the message's CONSUMER span, receive ws.conn, a child of the connection's
// handshake span (with WithNewRoots, a new trace linked to it). OnMessage runs under it.
func (o *Observer) Received(ctx context.Context, c *wsserver.Conn, m wsserver.Message) context.Context {
	if o == nil {
		return ctx
	}
	if o.m.messages.Enabled(ctx) {
		o.m.messages.Add(ctx, 1, optReceive...)
	}
	if o.m.bytes.Enabled(ctx) {
		o.m.bytes.Add(ctx, int64(len(m.Data)), optReceive...)
	}
	if !o.spans {
		return ctx
	}
	var span trace.Span
	if sc := trace.SpanContextFromContext(ctx); o.linked && sc.IsValid() {
		ctx, span = o.tracer.Start(ctx, spanReceive, receiveKind, receiveFixed,
			trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: sc}))
	} else {
		ctx, span = o.tracer.Start(ctx, spanReceive, receiveKind, receiveFixed)
	}
	if span.IsRecording() {
		span.SetAttributes(connID(c), attribute.Int(keyBodySize, len(m.Data)))
	}
	return ctx
}

// Handled ends the receive span; a panic in OnMessage sets status Error and error.type.
func (o *Observer) Handled(ctx context.Context, c *wsserver.Conn, m wsserver.Message, recovered any) {
	if o == nil {
		return
	}
	if !o.spans {
		return
	}
	span := trace.SpanFromContext(ctx)
	if recovered != nil && span.IsRecording() {
		span.SetStatus(codes.Error, panicMessage(recovered))
		span.SetAttributes(attribute.String(keyErrorType, fmt.Sprintf("%T", recovered)))
	}
	span.End()
}

// Broadcast records a PRODUCER span, publish ws.room, as the child of the sender's span; the
// send span of every member is its child, so one message shows its whole fan-out.
func (o *Observer) Broadcast(ctx context.Context, room string, m wsserver.Message, members int) context.Context {
	if o == nil {
		return ctx
	}
	if !o.spans {
		return ctx
	}
	ctx, span := o.tracer.Start(ctx, spanBroadcast, producerKind, broadcastFixed)
	if span.IsRecording() {
		span.SetAttributes(attribute.String(keyRoom, room), attribute.Int(keyMembers, members),
			attribute.Int(keyBodySize, len(m.Data)))
	}
	span.End()
	return ctx
}

// Sent starts a PRODUCER span, send ws.conn, child of the sender's context; it lasts until
// the message is written (or given up), so it shows the time spent in the outbound buffer.
func (o *Observer) Sent(ctx context.Context, c *wsserver.Conn, m wsserver.Message) context.Context {
	if o == nil {
		return ctx
	}
	if !o.spans {
		return ctx
	}
	_, span := o.tracer.Start(ctx, spanSend, producerKind, sendFixed)
	if !span.IsRecording() {
		return ctx
	}
	span.SetAttributes(connID(c), attribute.Int(keyBodySize, len(m.Data)))
	return context.WithValue(ctx, sendSpanKey{}, span)
}

// Written counts a message written, or a message given up as dropped, and ends its send span.
func (o *Observer) Written(ctx context.Context, c *wsserver.Conn, m wsserver.Message, err error) {
	if o == nil {
		return
	}
	if err == nil {
		if o.m.messages.Enabled(ctx) {
			o.m.messages.Add(ctx, 1, optTransmit...)
		}
		if o.m.bytes.Enabled(ctx) {
			o.m.bytes.Add(ctx, int64(len(m.Data)), optTransmit...)
		}
		endSend(ctx, "")
		return
	}
	why := wsserver.ReasonWriteError
	if errors.Is(err, wsserver.ErrClosed) {
		why = wsserver.ReasonClosed
	}
	if o.m.dropped.Enabled(ctx) {
		o.m.dropped.Add(ctx, 1, reasonOf(why).add...)
	}
	endSend(ctx, why)
}

// Dropped counts a message refused by reason and ends its send span with an error.
func (o *Observer) Dropped(ctx context.Context, c *wsserver.Conn, m wsserver.Message, reason string) {
	if o == nil {
		return
	}
	if o.m.dropped.Enabled(ctx) {
		o.m.dropped.Add(ctx, 1, reasonOf(reason).add...)
	}
	endSend(ctx, reason)
}

// endSend ends the send span Sent put in ctx, if there is one; a non-empty failed is why
// the message was not written (status Error, error.type).
func endSend(ctx context.Context, failed string) {
	span, ok := ctx.Value(sendSpanKey{}).(trace.Span)
	if !ok {
		return
	}
	if failed != "" {
		span.SetStatus(codes.Error, failed)
		span.SetAttributes(attribute.String(keyErrorType, failed))
	}
	span.End()
}

func connID(c *wsserver.Conn) attribute.KeyValue {
	return attribute.String(keyConnID, strconv.FormatUint(c.ID(), 10))
}

// BrokerFailed (wsserver.BrokerObserver) records a failed Publish, Subscribe or Unsubscribe
// of the server's Broker: a span "broker <op>" with status Error, a child of the span that
// was current where it failed (the broadcast's, for a publication), and the count
// dispatch.ws.broker.errors by operation. A failed publication is also a drop, reason
// "broker".
func (o *Observer) BrokerFailed(room, op string, err error) {
	if o == nil {
		return
	}
	ctx := queue.CurrentContext()
	if o.m.brokerErrs.Enabled(ctx) {
		o.m.brokerErrs.Add(ctx, 1, reasonOf(op).opAdd...)
	}
	if op == "publish" && o.m.dropped.Enabled(ctx) {
		o.m.dropped.Add(ctx, 1, reasonOf(reasonBroker).add...)
	}
	if !o.spans {
		return
	}
	_, span := o.tracer.Start(ctx, "broker "+op, trace.WithAttributes(
		attrSystem, attribute.String(keyRoom, room), attribute.String(keyErrorType, fmt.Sprintf("%T", err))))
	span.SetStatus(codes.Error, err.Error())
	span.End()
}

// reasonBroker is the drop reason of a publication the Broker refused.
const reasonBroker = "broker"
