package tracing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/dispatchkit/dispatchkit/wsserver"
)

// Span names and attributes of the server. Span names use the roles ("ws.conn", "ws.room"),
// so they stay few; which connection or room is an attribute.
const (
	spanHandshake = "ws.handshake"
	spanClose     = "ws.close"
	spanReceive   = "receive ws.conn"
	spanSend      = "send ws.conn"
	spanBroadcast = "publish ws.room"

	keyConnID     = "dispatch.ws.conn.id"
	keyRoom       = "dispatch.ws.room"
	keyMembers    = "dispatch.ws.room.members"
	keyBodySize   = "messaging.message.body.size"
	keyTemplate   = "messaging.destination.template"
	keyCloseCode  = "dispatch.ws.close.code"
	keyCloseBy    = "dispatch.ws.close.by"
	keyCloseText  = "dispatch.ws.close.reason"
	keyCloseCause = "dispatch.ws.close.cause"
	keyDropReason = "dispatch.ws.drop.reason"

	roleConn = "ws.conn"
	roleRoom = "ws.room"
)

var (
	wsDest         = attribute.String(keyDestination, roleConn)
	roomTemplate   = attribute.String(keyTemplate, roleRoom)
	attrOpReceive  = attribute.String("messaging.operation.name", "receive")
	attrOpTypeRecv = attribute.String("messaging.operation.type", "receive")
	attrOpPublish  = attribute.String("messaging.operation.name", "publish")
	receiveKind    = trace.WithSpanKind(trace.SpanKindConsumer)
	producerKind   = trace.WithSpanKind(trace.SpanKindProducer)
	newRoot        = trace.WithNewRoot()
	receiveFixed   = trace.WithAttributes(attrSystem, attrOpReceive, attrOpTypeRecv, wsDest)
	sendFixed      = trace.WithAttributes(attrSystem, attrOpSend, attrOpTypeSend, wsDest)
	broadcastFixed = trace.WithAttributes(attrSystem, attrOpPublish, attrOpTypeSend, roomTemplate)
)

// sendSpanKey carries a send span from Sent to Written or Dropped.
type sendSpanKey struct{}

// An owned span is one the server started for a block it queues on a connection's queue
// (a message's receive span, a connection's close span). The block adopts it as its own
// span when it runs (no process span of its own), so the span lasts until the block has
// finished and no child it runs outlives it (a close span ends in Closed, which the block
// runs once OnClose has returned, so that it has ended when Shutdown returns). Without a
// queue Observer on the connection's queue nothing adopts it, and the server's own hook
// (Handled, Closed) ends it.
type owned struct {
	span    trace.Span
	q       *queue.Queue
	adopted atomic.Bool
}

type ownedKey struct{}

// ownedBy returns the owned span in ctx if ctx is the one it was made for (its span is the
// current one) and q is the queue it belongs to.
func ownedBy(ctx context.Context, q *queue.Queue) *owned {
	st, ok := ctx.Value(ownedKey{}).(*owned)
	if !ok || st.q != q || trace.SpanContextFromContext(ctx).SpanID() != st.span.SpanContext().SpanID() {
		return nil
	}
	return st
}

// withOwned returns ctx with span current and owned by q's next block run under it.
func withOwned(ctx context.Context, span trace.Span, q *queue.Queue) context.Context {
	return context.WithValue(trace.ContextWithSpan(ctx, span), ownedKey{}, &owned{span: span, q: q})
}

// Handshake starts the connection's span, ws.handshake: SERVER kind with the HTTP server
// attributes, or INTERNAL under an HTTP server span (otelhttp's). It ends when the upgrade
// succeeds or is refused. OnOpen runs in its trace; each message and the close start traces
// of their own, linked to it.
func (o *Observer) Handshake(ctx context.Context, r *http.Request) context.Context {
	if o == nil || !o.spans {
		return ctx
	}
	kind := trace.SpanKindServer
	if trace.SpanContextFromContext(ctx).IsValid() {
		kind = trace.SpanKindInternal
	}
	ctx, _ = o.tracer.Start(ctx, spanHandshake, trace.WithSpanKind(kind), trace.WithAttributes(httpAttrs(r)...))
	return ctx
}

// httpAttrs are the OTel HTTP server attributes of an upgrade request.
func httpAttrs(r *http.Request) []attribute.KeyValue {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", r.Method),
		attribute.String("url.scheme", scheme),
		attribute.String("url.path", r.URL.Path),
		attribute.String("network.protocol.name", "http"),
		attribute.String("network.protocol.version", fmt.Sprintf("%d.%d", r.ProtoMajor, r.ProtoMinor)),
	}
	if host, port := splitHostPort(r.Host); host != "" {
		attrs = append(attrs, attribute.String("server.address", host))
		if port > 0 {
			attrs = append(attrs, attribute.Int("server.port", port))
		}
	}
	if host, port := splitHostPort(r.RemoteAddr); host != "" {
		attrs = append(attrs, attribute.String("client.address", host))
		if port > 0 {
			attrs = append(attrs, attribute.Int("client.port", port))
		}
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, attribute.String("user_agent.original", ua))
	}
	return attrs
}

func splitHostPort(hp string) (string, int) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}

// Refused ends the handshake span with the response status and error.type (status Error
// for a 5xx only, as the HTTP conventions ask of a server) and counts the refusal.
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
		if status >= 500 {
			span.SetStatus(codes.Error, reason)
		}
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

// Closing (wsserver.CloseObserver) starts the connection's close span, ws.close: the root
// of a trace of its own, linked to the handshake span, with the close code, who closed
// first and why. Leaving the rooms and OnClose run in its trace; OnClose's block adopts it,
// so it ends when OnClose has returned.
func (o *Observer) Closing(ctx context.Context, c *wsserver.Conn, info wsserver.CloseInfo) context.Context {
	if o == nil || !o.spans {
		return ctx
	}
	conn := trace.SpanContextFromContext(ctx)
	ctx, span := o.tracer.Start(ctx, spanClose, newRoot)
	if span.IsRecording() {
		if conn.IsValid() {
			span.AddLink(trace.Link{SpanContext: conn})
		}
		span.SetAttributes(connID(c),
			attribute.Int(keyCloseCode, int(info.Code)),
			attribute.String(keyCloseBy, info.By),
			attribute.String(keyCloseCause, info.Why))
		if info.Reason != "" {
			span.SetAttributes(attribute.String(keyCloseText, info.Reason))
		}
		if !normalDeparture(info.Why) {
			span.SetStatus(codes.Error, info.Why)
			span.SetAttributes(attribute.String(keyErrorType, info.Why))
		}
	}
	return withOwned(ctx, span, c.Queue())
}

// normalDeparture reports whether a close reason is an ordinary end of a connection rather
// than a failure: closed normally or going away by either side, closed by the application,
// or by Shutdown. The others (a fault the server found, a lost connection) are errors.
func normalDeparture(why string) bool {
	switch why {
	case wsserver.ReasonNormal, wsserver.ReasonPeerClose, wsserver.ReasonServerClose, wsserver.ReasonShutdown:
		return true
	}
	return false
}

// Closed records how long the connection lived and why it closed, and ends the close span
// (it runs after OnClose, before Shutdown returns).
func (o *Observer) Closed(ctx context.Context, c *wsserver.Conn, lived time.Duration, reason string, err error) {
	if o == nil {
		return
	}
	r := closeOf(reason)
	if o.m.conns.Enabled(ctx) {
		o.m.conns.Add(ctx, -1)
	}
	if o.m.connDur.Enabled(ctx) {
		o.m.connDur.Record(ctx, lived.Seconds(), r.record...)
	}
	if o.m.closed.Enabled(ctx) {
		o.m.closed.Add(ctx, 1, r.add...)
	}
	if o.insp != nil {
		o.insp.QueueClosed(c.Queue()) // a connection's queue is done once OnClose ran
	}
	// End the close span here even when OnClose's block adopted it: Closed runs in that
	// block once OnClose has returned, and before Shutdown can return, while the queue
	// Observer's Finished (which ends an adopted span too: a second End does nothing) comes
	// after the block, possibly after a program has flushed its telemetry.
	if st, ok := ctx.Value(ownedKey{}).(*owned); ok {
		st.span.End()
	}
}

// Received starts the message's CONSUMER span, receive ws.conn: the root of the message's
// trace, linked to the connection's handshake span. OnMessage's block adopts it, so it lasts
// from the read until OnMessage has returned (its wait on the connection's queue included),
// and everything the message causes is in its trace. A sampler samples messages.
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
	conn := trace.SpanContextFromContext(ctx)
	ctx, span := o.tracer.Start(ctx, spanReceive, receiveKind, receiveFixed, newRoot)
	if span.IsRecording() {
		// Added after the start, so that an unsampled message pays for neither.
		if conn.IsValid() {
			span.AddLink(trace.Link{SpanContext: conn})
		}
		span.SetAttributes(connID(c), attribute.Int(keyBodySize, len(m.Data)))
	}
	return withOwned(ctx, span, c.Queue())
}

// Handled records a panic in OnMessage (status Error, error.type) on the receive span, and
// ends it if OnMessage's block did not adopt it.
func (o *Observer) Handled(ctx context.Context, c *wsserver.Conn, m wsserver.Message, recovered any) {
	if o == nil || !o.spans {
		return
	}
	span := trace.SpanFromContext(ctx)
	if recovered != nil && span.IsRecording() {
		span.SetStatus(codes.Error, panicMessage(recovered))
		span.SetAttributes(attribute.String(keyErrorType, fmt.Sprintf("%T", recovered)))
	}
	if st, ok := ctx.Value(ownedKey{}).(*owned); !ok || !st.adopted.Load() {
		span.End()
	}
}

// Broadcast starts a PRODUCER span, publish ws.room, child of the room's block that fans m
// out (itself a child of the block that called Room.Broadcast); the send span of every member
// is its child, and it ends when every member has been handed m (BroadcastDone).
func (o *Observer) Broadcast(ctx context.Context, room string, m wsserver.Message, members int) context.Context {
	if o == nil || !o.spans {
		return ctx
	}
	if unsampledParent(ctx) {
		return ctx
	}
	ctx, span := o.tracer.Start(ctx, spanBroadcast, producerKind, broadcastFixed)
	if span.IsRecording() {
		span.SetAttributes(attribute.String(keyDestination, room), attribute.String(keyRoom, room),
			attribute.Int(keyMembers, members), attribute.Int(keyBodySize, len(m.Data)))
	}
	return ctx
}

// BroadcastDone (wsserver.BroadcastObserver) ends the publish span, once every member of
// this node has been handed the message.
func (o *Observer) BroadcastDone(ctx context.Context, room string, m wsserver.Message, res wsserver.BroadcastResult) {
	if o == nil || !o.spans {
		return
	}
	trace.SpanFromContext(ctx).End()
}

// Sent starts a PRODUCER span, send ws.conn, child of the sender's context; it lasts until
// the message is written (or given up), so it shows the time spent in the outbound buffer.
// It is the one kind of span that may outlive its parent: the write is asynchronous.
func (o *Observer) Sent(ctx context.Context, c *wsserver.Conn, m wsserver.Message) context.Context {
	if o == nil || !o.spans {
		return ctx
	}
	if unsampledParent(ctx) {
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

// Dropped counts a message refused by reason and ends its send span.
func (o *Observer) Dropped(ctx context.Context, c *wsserver.Conn, m wsserver.Message, reason string) {
	if o == nil {
		return
	}
	if o.m.dropped.Enabled(ctx) {
		o.m.dropped.Add(ctx, 1, reasonOf(reason).add...)
	}
	endSend(ctx, reason)
}

// endSend ends the send span Sent put in ctx, if there is one. A non-empty failed is why the
// message was not written: a send to a connection that is closing or closed is a normal
// departure (dispatch.ws.drop.reason only); any other reason is an error (status Error,
// error.type).
func endSend(ctx context.Context, failed string) {
	span, ok := ctx.Value(sendSpanKey{}).(trace.Span)
	if !ok {
		return
	}
	switch failed {
	case "":
	case wsserver.ReasonClosed:
		span.SetAttributes(attribute.String(keyDropReason, failed))
	default:
		span.SetStatus(codes.Error, failed)
		span.SetAttributes(attribute.String(keyDropReason, failed), attribute.String(keyErrorType, failed))
	}
	span.End()
}

func connID(c *wsserver.Conn) attribute.KeyValue {
	return attribute.String(keyConnID, strconv.FormatUint(c.ID(), 10))
}

// BrokerFailed (wsserver.BrokerObserver) records a failed Publish, Subscribe or Unsubscribe
// of the server's Broker: a span "broker <op>" with status Error, a child of the span that
// was current where it failed (the room's block, for a publication), and the count
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
		attrSystem, attribute.String(keyRoom, room), attribute.String(keyDestination, room),
		attribute.String(keyErrorType, "broker_"+op)))
	span.SetStatus(codes.Error, err.Error())
	span.End()
}

// reasonBroker is the drop reason of a publication the Broker refused.
const reasonBroker = "broker"
