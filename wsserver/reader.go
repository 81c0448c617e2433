package wsserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// readLoop is the connection's reader under the goroutine transport (TransportGoroutine,
// TLS, platforms without epoll): one goroutine for the connection's whole life, blocked in
// Read while it is idle (coder/websocket answers pings and close frames only while someone
// reads). It hands each message to the connection's queue, so callbacks never run on its
// stack and the stack stays shallow. When the handler falls MaxPending messages behind, it
// stops reading until the handler catches up: TCP then slows the peer down. (The readiness
// transport's reader is pollConn.run.)
func (c *Conn) readLoop() {
	var err error
	defer func() { c.finish(err) }()
	limit := int32(c.s.opts.MaxPending)
	for {
		if c.backlog.Load() >= limit {
			c.waitBacklog(limit)
		}
		var typ websocket.MessageType
		var data []byte
		typ, data, err = c.readMessage()
		if err == nil {
			err = c.received(typ, data)
		}
		if err != nil {
			c.readFailed(err)
			return
		}
	}
}

// scratchPool holds the buffers messages are read into: a message costs one allocation of
// its exact size (the Data the handler owns), not io.ReadAll's 512 bytes and doublings.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxScratch is the largest scratch buffer kept for reuse.
const maxScratch = 64 << 10

// readMessage reads one message with coder/websocket (which answers the control frames on
// the way) and returns a copy of it that belongs to the caller.
func (c *Conn) readMessage() (websocket.MessageType, []byte, error) {
	ws := c.coder()
	if ws == nil {
		return 0, nil, net.ErrClosed
	}
	typ, r, err := ws.Reader((*readCtx)(c))
	if err != nil {
		return 0, nil, err
	}
	bp := scratchPool.Get().(*[]byte)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		var n int
		n, err = r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			break
		}
	}
	var data []byte
	if err == io.EOF {
		err = nil
		data = make([]byte, len(b))
		copy(data, b)
	}
	if cap(b) <= maxScratch {
		*bp = b[:0]
		scratchPool.Put(bp)
	}
	return typ, data, err
}

// received queues a message for the handler (the guard has checked its frames). It returns
// the violation when the message breaks a rule checked only here (the UTF-8 of a compressed
// text message, once inflated): the reader stops.
func (c *Conn) received(typ websocket.MessageType, data []byte) error {
	m, ok, err := c.admit(typ, data)
	if ok {
		c.dispatch(m)
	}
	return err
}

// admit is received without the dispatch: whether the message goes to the handler.
func (c *Conn) admit(typ websocket.MessageType, data []byte) (Message, bool, error) {
	if e := c.s.ka.epoch.Load(); c.heard.Load() != e {
		// Only the reader writes heard once the connection is open: looked at first, it is
		// stored (an exchange, a locked instruction) once per keepalive tick at most.
		c.heard.Store(e)
	}
	if c.state.Load() != stateOpen {
		return Message{}, false, nil // closing: the handshake is under way, late messages are dropped
	}
	if typ == websocket.MessageText && c.bw.guard.compressed && !utf8.Valid(data) {
		// The guard checks uncompressed text as it arrives; this one only once inflated.
		v := &violation{code: websocket.StatusInvalidFramePayloadData, reason: "invalid UTF-8", cause: ErrInvalidUTF8, why: ReasonInvalidUTF8}
		c.bw.guard.failNow(v)
		return Message{}, false, v
	}
	c.s.stats.msgsIn.Add(1)
	c.s.stats.bytesIn.Add(uint64(len(data)))
	return Message{Type: typ, Data: data}, true, nil
}

// readFailed closes the connection in order when reading stopped at a frame the peer must
// not send (the guard's violation); for any other error there is nothing left to say.
func (c *Conn) readFailed(err error) {
	var v *violation
	if errors.As(err, &v) {
		c.fail(v)
	}
}

// waitBacklog parks the reader until the handler has fewer than limit messages waiting.
// Meanwhile nothing reads the peer's pongs: keepalive neither pings nor times it out.
func (c *Conn) waitBacklog(limit int32) {
	c.pauses.Add(1)
	c.setFlag(flagPaused, true)
	defer c.setFlag(flagPaused, false)
	m := c.extra()
	for c.backlog.Load() >= limit {
		ch := m.resume.Load()
		if ch == nil {
			made := make(chan struct{}, 1)
			m.resume.Store(&made)
			ch = &made
		}
		// Check again after publishing the channel: a handler that finished before it was
		// published did not signal, but its decrement is visible now.
		if c.backlog.Load() < limit {
			return
		}
		<-*ch
	}
}

// handled counts one message as done and wakes a waiting reader.
func (c *Conn) handled() {
	c.backlog.Add(-1)
	if c.pc != nil {
		c.pc.resume(int32(c.s.opts.MaxPending))
		return
	}
	if m := c.more.Load(); m != nil {
		if ch := m.resume.Load(); ch != nil {
			select {
			case *ch <- struct{}{}:
			default:
			}
		}
	}
}

// dispatch queues OnMessage on the connection's queue.
func (c *Conn) dispatch(m Message) {
	c.backlog.Add(1)
	c.queueMessage(m)
}

// queueMessage is dispatch once the message is counted in backlog.
func (c *Conn) queueMessage(m Message) {
	obs := c.s.obs
	if obs == nil {
		c.q.Async(func() { c.onMessage(m) })
		return
	}
	ctx := obs.Received(c.root(), c, m)
	// AsyncContext runs the block under ctx: queue.CurrentContext() inside OnMessage is the
	// receive span, and a Send there carries it.
	c.q.AsyncContext(ctx, c.messageBlock(ctx, obs, m))
}

// messageBlock is the queue block that handles m under an Observer.
func (c *Conn) messageBlock(ctx context.Context, obs Observer, m Message) func(context.Context) {
	return func(context.Context) {
		// Handled gets Received's context, not the block's (a queue observer may have
		// wrapped it in a span of its own).
		var recovered any
		defer func() { obs.Handled(ctx, c, m, recovered) }()
		recovered = c.onMessage(m)
	}
}

// runInline runs OnMessage (m counted in backlog) through the connection's queue with
// SyncContext, so on the calling reader's goroutine: no hand-off to a worker and no worker
// wake-up. The queue's order and exclusion hold: Sync waits for a block of the
// connection's that runs, and for a slot of the handler queue. The readiness transport's
// reader calls it after letting the connection go (pollConn.letGo), so that another reader
// reads what comes meanwhile (a handler may wait for the peer's next message, or for the
// connection's end); its runner stops counting as busy meanwhile (pollSet.blockBegin), so
// no other connection waits for it either.
//
// What another reader read before it entered the queue (messages, the close) was held back
// (queueAfterInline, finish): once in, it queues it behind m (releaseHeld), so that the
// handler sees the peer's order, and OnClose comes last.
func (c *Conn) runInline(m Message) {
	obs := c.s.obs
	var err error
	if obs == nil {
		err = c.q.SyncContext(context.Background(), func(context.Context) { c.releaseHeld(); c.onMessage(m) })
		if err != nil {
			c.q.Async(func() { c.onMessage(m) }) // the queue refused; Async says what it does then
			c.releaseHeld()
		}
		return
	}
	ctx := obs.Received(c.root(), c, m)
	block := c.messageBlock(ctx, obs, m)
	if err = c.q.SyncContext(ctx, func(ctx context.Context) { c.releaseHeld(); block(ctx) }); err != nil {
		c.q.AsyncContext(ctx, block)
		c.releaseHeld()
	}
}

// queueAfterInline is queueMessage for a message read by a reader that may have started
// while the one before it let the connection go to run a message inline: until that one is
// in the queue (flagInline), the message is held, to be queued behind it (releaseHeld).
func (c *Conn) queueAfterInline(m Message) {
	if !c.flag(flagInline) || !c.hold(func() { c.queueMessage(m) }) {
		c.queueMessage(m)
	}
}

// hold keeps queue (what queues a message's or the close's block) for releaseHeld, and
// reports true, while a reader is on its way into the queue with a message to run inline;
// once it is in, it reports false: the caller queues at once. It raises flagHeld in the
// same step as it sees flagInline set (a CompareAndSwap of the flags word), so that
// releaseHeld, which clears flagInline with a CompareAndSwap of a word without flagHeld,
// cannot clear it in between and leave the block held for good.
func (c *Conn) hold(queue func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		f := c.flags.Load()
		if f&flagInline == 0 {
			return false
		}
		if c.flags.CompareAndSwap(f, f|flagHeld) {
			break
		}
	}
	x := c.extra()
	x.held = append(x.held, queue)
	return true
}

// releaseHeld queues what was held while the inline reader was on its way into the queue,
// in order, and clears flagInline once nothing is left: what is queued directly after
// that comes after it. With nothing held (the rule: flagHeld clear) it is one
// CompareAndSwap of the flags word: neither the lock nor connMore is touched.
func (c *Conn) releaseHeld() {
	for {
		f := c.flags.Load()
		if f&flagHeld == 0 {
			if c.flags.CompareAndSwap(f, f&^flagInline) {
				return
			}
			continue
		}
		// hold raised flagHeld under mu: its append is done once mu is ours.
		c.mu.Lock()
		x := c.more.Load()
		held := x.held
		x.held = nil
		c.setFlag(flagHeld, false)
		c.mu.Unlock()
		for _, queue := range held {
			queue()
		}
	}
}

// onMessage runs OnMessage, turning a panic into a 1011 close; it returns the panic value.
func (c *Conn) onMessage(m Message) (recovered any) {
	defer func() {
		if r := recover(); r != nil {
			recovered = r
			c.panicked(r, debug.Stack())
		}
		c.handled()
	}()
	if c.flag(flagHalted) {
		// The server closed the connection after this message was read (Close, a panic, a
		// violation): it is dropped. Messages that came before a close by the peer are not.
		return nil
	}
	c.s.h.OnMessage(c, m)
	return nil
}

// onOpen runs OnOpen on the connection's queue.
func (c *Conn) onOpen() {
	defer func() {
		if r := recover(); r != nil {
			c.panicked(r, debug.Stack())
		}
	}()
	c.s.h.OnOpen(c)
}

// panicked closes the connection with 1011 and tells the panic handler.
func (c *Conn) panicked(r any, stack []byte) {
	c.closeWith(websocket.StatusInternalError, "internal error", fmt.Errorf("%w: %v", ErrHandlerPanic, r), ReasonPanic, false)
	c.s.panicHandler(c, r, stack)
}

// fail closes the connection for a frame the peer must not send (the guard's violation):
// the messages read before it are still handled and what their handlers send goes out, then
// the close frame (the close is queued behind them); the reader waits for that close
// handshake, during which the guard drains the input, so that the socket then closes with
// nothing unread.
func (c *Conn) fail(v *violation) {
	if v.inFrame {
		v.shut = c.bw.shutSending
	}
	c.mu.Lock()
	var wait chan struct{}
	if !c.closeDone {
		wait = make(chan struct{})
		c.bw.guard.closeWait = wait
	}
	c.mu.Unlock()
	c.q.Async(func() { c.closeWith(v.code, v.reason, v.cause, v.why, true) })
	if wait != nil {
		// Paused by us, as in waitBacklog: keepalive must not take the wait for a dead peer.
		c.pauses.Add(1)
		c.setFlag(flagPaused, true)
		<-wait // the writer's close handshake, or an abort, ends it
		c.setFlag(flagPaused, false)
	}
}

// closeHandshake sends a close frame and waits, at most grace, for the peer's: coder's
// Close reads the answer itself, so the readiness transport's reads turn blocking first.
// That also keeps the reader out of the stream while coder's Conn is made again here, if
// the reader had dropped it (see coder.go); with none left (the reader finished without one
// and closed the socket) there is nothing to do.
func (c *Conn) closeHandshake(code websocket.StatusCode, reason string, grace time.Duration) {
	if c.pc != nil {
		c.pc.setBlocking()
	}
	ws := c.coder()
	if ws == nil {
		return
	}
	_ = c.sock().SetDeadline(time.Now().Add(grace))
	_ = ws.Close(code, reason)
}

// allow takes a token from the rate-limit bucket, for a frame (the guard calls it).
func (c *Conn) allow() bool {
	now := time.Now()
	o := &c.s.opts
	b := c.more.Load() // made at the upgrade with a rate limit
	b.tokens = min(float64(o.RateBurst), b.tokens+now.Sub(b.refill).Seconds()*o.RateLimit)
	b.refill = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// testHookInline, if set, runs when the reader has let the connection go to run a message
// inline, before it enters the connection's queue; testHookQueued, when a reader has handed
// a message or the close to the queue, or held it (tests only).
var testHookInline, testHookQueued atomic.Pointer[func(c *Conn)]

func stepHook(h *atomic.Pointer[func(c *Conn)], c *Conn) {
	if f := h.Load(); f != nil {
		(*f)(c)
	}
}

// testHookFinish, if set, runs when the reader has stopped, before the connection ends.
var testHookFinish atomic.Pointer[func(c *Conn)]

// finish runs once the reader has stopped: the connection is over. It releases the socket,
// leaves the rooms, ends Context, and queues OnClose behind every OnMessage already queued.
func (c *Conn) finish(readErr error) {
	if h := testHookFinish.Load(); h != nil {
		(*h)(c)
	}
	if errors.Is(readErr, websocket.ErrMessageTooBig) {
		// coder/websocket has sent 1009; finish the handshake, which reads past the rest of
		// the message: closing with unread data would reset the connection, and the peer
		// could lose the close frame.
		c.closeHandshake(websocket.StatusMessageTooBig, "", closeGrace)
	}
	if ws := c.finalCoder(); ws != nil {
		_ = ws.CloseNow() // waits for a close handshake under way on the writer
	} else {
		_ = c.pc.Close() // none was made again: no close handshake is under way (coder.go)
	}
	c.mu.Lock()
	if c.causeLocked() == nil && errors.Is(readErr, websocket.ErrMessageTooBig) {
		c.setCauseLocked(websocket.StatusMessageTooBig, "message too big", ErrMessageTooBig, ReasonTooBig)
	}
	c.state.Store(stateEnded)
	c.discardLocked()
	c.closeReq = nil
	var rooms []*Room
	cause, why := c.causeLocked(), ""
	if m := c.more.Load(); m != nil {
		rooms, m.rooms = m.rooms, nil
		why = m.why
		if m.cancel != nil {
			m.cancel()
		}
	}
	c.mu.Unlock()
	why, err := closeResult(readErr, cause, why)
	if co, ok := c.s.obs.(CloseObserver); ok {
		// The close is traced apart from the open: leaving the rooms and OnClose run under
		// the context Closing returns.
		c.extra().end = co.Closing(c.root(), c, closeInfo(readErr, cause, why, err))
	}
	end := c.end()
	for _, r := range rooms {
		r.leave(end, c)
	}
	if !c.flag(flagInline) || !c.hold(func() { c.queueClose(end, err, why) }) {
		c.queueClose(end, err, why)
	}
	stepHook(&testHookQueued, c)
}

// finalCoder returns the connection's coder/websocket Conn for the reader's end: nil when
// the reader had dropped it (coder.go), and then none is made again.
func (c *Conn) finalCoder() *websocket.Conn {
	if ws := c.ws.Load(); ws != nil {
		return ws
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.ws.Load()
	if ws == nil {
		c.setFlag(flagCoderGone, true)
	}
	return ws
}

// queueClose queues OnClose, under end when the CloseObserver gave one.
func (c *Conn) queueClose(end context.Context, err error, why string) {
	if end != nil {
		c.q.AsyncContext(end, func(context.Context) { c.onClose(err, why) })
	} else {
		c.q.Async(func() { c.onClose(err, why) })
	}
}

// closeInfo describes the end of a connection for a CloseObserver: the server closed it if it
// set a cause, the peer otherwise.
func closeInfo(readErr error, cause *CloseError, why string, err error) CloseInfo {
	if cause != nil {
		return CloseInfo{Code: cause.Code, Reason: cause.Reason, By: "server", Why: why, Err: err}
	}
	info := CloseInfo{Code: websocket.CloseStatus(readErr), By: "peer", Why: why, Err: err}
	var ce websocket.CloseError
	if errors.As(readErr, &ce) {
		info.Reason = ce.Reason
	}
	if info.Code == -1 {
		info.Code = websocket.StatusAbnormalClosure
	}
	return info
}

// closeResult is the Observer's reason and the error OnClose gets.
func closeResult(readErr error, cause *CloseError, why string) (string, error) {
	if cause != nil {
		if cause.Code == websocket.StatusNormalClosure {
			return ReasonNormal, nil
		}
		return why, cause
	}
	switch code := websocket.CloseStatus(readErr); code {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
		// An empty close frame (1005) is what browsers' and most clients' close() send.
		return ReasonNormal, nil
	case -1:
		return ReasonReadError, &CloseError{Code: websocket.StatusAbnormalClosure, Cause: fmt.Errorf("%w: %w", ErrConnectionLost, readErr)}
	default:
		return ReasonPeerClose, readErr
	}
}

// onClose runs OnClose and retires the connection.
func (c *Conn) onClose(err error, why string) {
	defer c.s.retire(c, err, why)
	defer func() {
		if r := recover(); r != nil {
			c.s.panicHandler(c, r, debug.Stack())
		}
	}()
	c.over = true
	c.s.h.OnClose(c, err)
}
