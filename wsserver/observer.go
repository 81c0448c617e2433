package wsserver

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// Close and drop reasons an Observer sees (low-cardinality strings for metric attributes).
const (
	ReasonNormal       = "normal"        // 1000 from either side, or 1001 from the peer
	ReasonPeerClose    = "peer_close"    // the peer closed with another code
	ReasonServerClose  = "server_close"  // Conn.Close with a code other than 1000
	ReasonSlowConsumer = "slow_consumer" // outbound buffer full
	ReasonRateLimit    = "rate_limit"    // RateLimit exceeded
	ReasonTooBig       = "too_big"       // ReadLimit exceeded
	ReasonInvalidUTF8  = "invalid_utf8"  // text message not valid UTF-8
	ReasonProtocol     = "protocol"      // the peer broke the protocol (1002)
	ReasonPanic        = "panic"         // a callback panicked
	ReasonPingTimeout  = "ping_timeout"  // no pong in time
	ReasonIdleTimeout  = "idle_timeout"  // nothing received for IdleTimeout
	ReasonWriteError   = "write_error"   // a write failed or timed out
	ReasonReadError    = "read_error"    // the connection ended without a close frame
	ReasonShutdown     = "shutdown"      // Server.Shutdown
	ReasonClosed       = "closed"        // drops only: Send on a closed connection
	ReasonConflated    = "conflated"     // drops only: replaced by a newer message with its key
)

// CloseInfo tells a CloseObserver how a connection ended.
type CloseInfo struct {
	Code   websocket.StatusCode // the close code; 1006 when the connection was lost without a close frame
	Reason string               // the close frame's reason text
	By     string               // who closed it first: "server" or "peer"
	Why    string               // one of the Reason constants, as Closed gets
	Err    error                // what OnClose gets (nil for a normal closure)
}

// A CloseObserver is an Observer that is also told when a connection has ended, so that the
// close can be traced apart from the open. Closing is called once, by the reader, before the
// connection leaves its rooms and OnClose is queued, with the root context (Handshake's). The
// Leave blocks and OnClose run under the context it returns, and Closed gets it.
type CloseObserver interface {
	Closing(ctx context.Context, c *Conn, info CloseInfo) context.Context
}

// An Observer is told what the server does; the tracing package implements it to make spans
// and metrics. Hooks run inline (on the reader, the handler's queue or the writer), so they
// must be quick and must not block. With no Observer each event costs one nil check.
//
// The contexts let a tracer follow a message through the server: Handshake's context is the
// connection's (OnOpen runs under it); Received's is the context OnMessage runs under
// (queue.CurrentContext inside the handler returns it), so a tracer can start each message's
// trace there; a Send passes the sender's queue.CurrentContext, and a room's Broadcast the
// context of the room's block that serves it (its sender's child), so that every send is in
// the trace of the message that caused it. With a CloseObserver, the close has a context of
// its own too.
type Observer interface {
	// Handshake is called when an upgrade request arrives, before any check. ctx is the
	// request's context without its cancellation; the returned context becomes the
	// connection's root (and the parent of Conn.Context).
	Handshake(ctx context.Context, r *http.Request) context.Context
	// Refused is called when a request is refused before the upgrade, with the HTTP status
	// (401, 403, 503, or what the handshake failed with) and why ("unauthorized",
	// "forbidden", "max_conns", "shutdown", "handshake").
	Refused(ctx context.Context, r *http.Request, status int, reason string)
	// Opened is called when the connection is upgraded, before OnOpen is queued. ctx is the
	// root context.
	Opened(ctx context.Context, c *Conn)
	// Closed is called once, after OnClose returned, with how long the connection lived, the
	// reason (one of the Reason constants) and the error OnClose got. Shutdown returns after
	// the last Closed has returned.
	Closed(ctx context.Context, c *Conn, lived time.Duration, reason string, err error)
	// Received is called by the reader for each message before it is queued; ctx is the root
	// context. The returned context is the one OnMessage runs under.
	Received(ctx context.Context, c *Conn, m Message) context.Context
	// Handled is called when OnMessage returned (or panicked: recovered is not nil), with the
	// context Received returned.
	Handled(ctx context.Context, c *Conn, m Message, recovered any)
	// Sent is called when Send (or a Broadcast) queued m for c. ctx is the sender's
	// queue.CurrentContext at the Send call (for a Broadcast, what Broadcast returned). The
	// returned context is handed to Written.
	Sent(ctx context.Context, c *Conn, m Message) context.Context
	// Written is called when m was written to the network (err nil) or given up (err set).
	Written(ctx context.Context, c *Conn, m Message, err error)
	// Dropped is called when a message to c was refused: the buffer was full
	// (ReasonSlowConsumer) or the connection closed (ReasonClosed). ctx is the sender's.
	Dropped(ctx context.Context, c *Conn, m Message, reason string)
	// Broadcast is called once per Room.Broadcast, on the room's queue, with the context of
	// the room's block (run under the sender's queue.CurrentContext) and the room's size; the
	// returned context is passed to Sent for every member.
	Broadcast(ctx context.Context, room string, m Message, members int) context.Context
}

// A BroadcastObserver is an Observer that also wants the outcome of every Room broadcast on
// this node, member by member: which members took the message, which refused it (their
// SlowConsumer policy) and which were closed or closing. The server calls BroadcastDone
// once per broadcast (a Broadcast, BroadcastKeyed or BroadcastLocal, or a message from
// another node), on the room's queue, after every member was served, with the context the
// Observer's Broadcast returned. An Observer that does not implement it costs nothing more.
type BroadcastObserver interface {
	BroadcastDone(ctx context.Context, room string, m Message, r BroadcastResult)
}

// A RemoteObserver is an Observer that is told about each message another node published to
// one of this server's rooms, when its Broker is a ContextBroker. RemoteReceived is called on
// the Broker's delivery goroutine before the message is handed to the room's queue, with the
// context the Broker delivered (the publisher's trace context, extracted); the room's block
// that serves the message runs under the context it returns. RemoteDelivered is called with
// that context once the message was handed to the room's queue (the hand-off is done: the
// room's block may still be waiting or running).
type RemoteObserver interface {
	RemoteReceived(ctx context.Context, room string, m Message, from Remote) context.Context
	RemoteDelivered(ctx context.Context, room string, m Message)
}

// BroadcastResult is how one broadcast went on this node. Members = Queued + Dropped + Closed.
type BroadcastResult struct {
	Members int            // this node's members it was handed to
	Queued  int            // accepted by the member's outbound buffer (or written at once)
	Dropped int            // refused by the member's policy (DropNewest): the member stays
	Closed  int            // the member was closed or closing, or CloseSlow closed it now
	Failed  []MemberResult // every member not Queued, with the error Send would have returned
}

// MemberResult is one member's outcome in a BroadcastResult.
type MemberResult struct {
	Conn *Conn
	Err  error // ErrClosed, ErrSlowConsumer
}

// add tallies c's outcome err.
func (r *BroadcastResult) add(c *Conn, err error) {
	switch {
	case err == nil:
		r.Queued++
		return
	case errors.Is(err, ErrClosed) || c.state.Load() != stateOpen:
		r.Closed++
	default:
		r.Dropped++
	}
	r.Failed = append(r.Failed, MemberResult{Conn: c, Err: err})
}

func (r *BroadcastResult) merge(p *BroadcastResult) {
	r.Queued += p.Queued
	r.Dropped += p.Dropped
	r.Closed += p.Closed
	r.Failed = append(r.Failed, p.Failed...)
}
