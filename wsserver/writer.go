package wsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// outMsg is one queued outbound message; ctx is the Observer's (nil without one), key the
// conflation key of SendKeyed ("" for none).
type outMsg struct {
	m   Message
	ctx context.Context
	key string
}

// outPool recycles outbound buffers, so that an idle connection holds none and a busy one
// does not grow a slice message by message.
var outPool = sync.Pool{New: func() any { s := make([]outMsg, 0, 16); return &s }}

func getOut() []outMsg { return (*outPool.Get().(*[]outMsg))[:0] }

func putOut(s []outMsg) {
	if cap(s) > 1024 {
		return // let an outsized one go
	}
	clear(s[:cap(s)])
	s = s[:0]
	outPool.Put(&s)
}

// enqueue appends m to the outbound buffer and makes sure a writer runs. ctx is the sender's
// context for the Observer (nil without one).
func (c *Conn) enqueue(ctx context.Context, m Message) error { return c.enqueueKey(ctx, "", m) }

// enqueueKey is enqueue with a conflation key ("" for none).
func (c *Conn) enqueueKey(ctx context.Context, key string, m Message) error {
	obs := c.s.obs
	if obs != nil {
		if ctx == nil {
			ctx = context.Background()
		}
		ctx = obs.Sent(ctx, c, m)
	}
	if m.Type != websocket.MessageText && m.Type != websocket.MessageBinary {
		return fmt.Errorf("wsserver: message type %v: want websocket.MessageText or websocket.MessageBinary", m.Type)
	}
	opts := &c.s.opts
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		c.dropped(ctx, m, ReasonClosed)
		return ErrClosed
	}
	if key != "" && opts.SlowConsumer == Conflate {
		if i := c.keyedLocked(key); i >= 0 {
			// The newer value takes the older one's place in the queue.
			old := c.out[i]
			c.out[i] = outMsg{m: m, ctx: ctx, key: key}
			c.outBytes += len(m.Data) - len(old.m.Data)
			c.mu.Unlock()
			c.s.stats.conflated.Add(1)
			c.dropped(old.ctx, old.m, ReasonConflated)
			return nil
		}
	}
	var evicted []outMsg
	if c.fullLocked(len(m.Data)) {
		switch opts.SlowConsumer {
		case DropNewest:
			c.mu.Unlock()
			c.dropped(ctx, m, ReasonSlowConsumer)
			return ErrSlowConsumer
		case DropOldest, Conflate:
			evicted = c.evictLocked(len(m.Data))
		}
	}
	if evicted == nil && c.fullLocked(len(m.Data)) {
		// CloseSlow: what is queued will not be written either; the writer sends 1008 once
		// its current write is done.
		c.setCauseLocked(websocket.StatusPolicyViolation, "slow consumer", ErrSlowConsumer, ReasonSlowConsumer)
		c.discardLocked()
		c.closeReq = &closeReq{code: websocket.StatusPolicyViolation, reason: "slow consumer"}
		start := !c.writing
		c.writing = true
		c.mu.Unlock()
		c.s.stats.slowCloses.Add(1)
		c.dropped(ctx, m, ReasonSlowConsumer)
		if start {
			go c.writeLoop()
		} else if c.sock() != nil {
			// The writer may be stuck on a peer that does not read: give its write only the
			// close grace, not the whole WriteTimeout.
			c.bw.hurry(time.Now().Add(min(closeGrace, opts.WriteTimeout)))
		}
		return ErrSlowConsumer
	}
	if !c.writing && c.bw != nil && c.bw.raw != nil {
		// Nothing queued, no writer: try to write it from here, sparing a goroutine. (Nothing
		// was evicted either: a full buffer has a writer.)
		c.writing = true
		c.mu.Unlock()
		c.sendNow(ctx, m, key)
		return nil
	}
	c.appendLocked(ctx, m, key, false)
	start := !c.writing
	c.writing = true
	turned := c.turnSlowLocked()
	c.mu.Unlock()
	for _, e := range evicted {
		c.dropped(e.ctx, e.m, ReasonSlowConsumer) // counted there
	}
	if turned {
		c.notifySlow(true)
	}
	if start {
		go c.writeLoop()
	}
	return nil
}

// fullLocked reports whether a message of n bytes does not fit in the outbound buffer.
// One message always fits in an empty buffer, however large.
func (c *Conn) fullLocked(n int) bool {
	o := &c.s.opts
	return len(c.out) >= o.SendBuffer || (len(c.out) > 0 && c.outBytes+n > o.SendBufferBytes)
}

// evictLocked takes the oldest queued messages out until one of n bytes fits, and returns
// them, to be counted and told to the Observer after the lock. It returns nil when nothing
// had to go.
func (c *Conn) evictLocked(n int) []outMsg {
	k := 0
	bytes := c.outBytes
	o := &c.s.opts
	for k < len(c.out) && (len(c.out)-k >= o.SendBuffer || bytes+n > o.SendBufferBytes) {
		bytes -= len(c.out[k].m.Data)
		k++
	}
	if k == 0 {
		return nil
	}
	evicted := slices.Clone(c.out[:k])
	c.out = slices.Delete(c.out, 0, k)
	c.outBytes = bytes
	return evicted
}

// keyedLocked returns the index of the queued message with key, or -1.
func (c *Conn) keyedLocked(key string) int {
	for i := range c.out {
		if c.out[i].key == key {
			return i
		}
	}
	return -1
}

// appendLocked adds m to the outbound buffer, at its front if first.
func (c *Conn) appendLocked(ctx context.Context, m Message, key string, first bool) {
	if c.out == nil {
		c.out = getOut()
	}
	e := outMsg{m: m, ctx: ctx, key: key}
	if first {
		c.out = slices.Insert(c.out, 0, e)
	} else {
		c.out = append(c.out, e)
	}
	c.outBytes += len(m.Data)
}

// sendNow writes m from the sender's goroutine when the socket takes it at once (a frame
// never waits for the socket here); otherwise the writer goroutine sends it, or the rest
// of it. The caller has taken the writer's role (c.writing): Sends made meanwhile queue
// behind it, and a close decided meanwhile is left to the writer started here.
func (c *Conn) sendNow(ctx context.Context, m Message, key string) {
	how, err := c.bw.tryFrame(m.Type, m.Data)
	if obs := c.s.obs; obs != nil && (how != frameNotSent || err != nil) {
		obs.Written(ctx, c, m, err)
	}
	if err != nil {
		c.s.stats.dropped.Add(1)
		c.mu.Lock()
		c.discardLocked()
		c.closeReq = nil
		c.writing = false
		c.mu.Unlock()
		c.writeFailed(err)
		return
	}
	c.mu.Lock()
	switch how {
	case frameNotSent:
		c.appendLocked(ctx, m, key, true)
	default:
		c.s.stats.msgsOut.Add(1)
		c.s.stats.bytesOut.Add(uint64(len(m.Data)))
		if how == frameSent && len(c.out) == 0 && c.closeReq == nil {
			c.writing = false
			c.mu.Unlock()
			return
		}
	}
	c.mu.Unlock()
	go c.writeLoop()
}

func (c *Conn) dropped(ctx context.Context, m Message, why string) {
	c.s.stats.dropped.Add(1)
	if obs := c.s.obs; obs != nil {
		obs.Dropped(ctx, c, m, why)
	}
}

// testHookWriterEnded, if set, runs after the writer's last flush, before it decides to stop.
var testHookWriterEnded atomic.Pointer[func(c *Conn)]

// writeLoop is the connection's writer: it runs while the outbound buffer has messages (or a
// close frame is due) and exits when it is empty, so an idle connection has no writer. Each
// round takes the whole buffer and writes it as one batch: one system call for a burst.
func (c *Conn) writeLoop() {
	timeout := c.s.opts.WriteTimeout
	c.bw.begin(time.Now().Add(timeout))
	refreshed := time.Now()
	for {
		c.mu.Lock()
		batch := c.out
		c.out, c.outBytes = nil, 0
		if len(batch) == 0 {
			req := c.closeReq
			c.closeReq = nil
			if req == nil {
				c.mu.Unlock()
				err := c.bw.end()
				if h := testHookWriterEnded.Load(); h != nil {
					(*h)(c)
				}
				c.mu.Lock()
				if err == nil && (len(c.out) > 0 || c.closeReq != nil) {
					// Sent or closed while we were flushing (closeWith started no writer: this
					// one was running): go on.
					c.mu.Unlock()
					c.bw.begin(time.Now().Add(timeout))
					refreshed = time.Now()
					continue
				}
				c.writing = false
				recovered := c.slow && err == nil
				c.slow = false
				c.mu.Unlock()
				if err != nil {
					c.writeFailed(err)
				}
				if recovered {
					c.notifySlow(false)
				}
				return
			}
			c.mu.Unlock()
			err := c.bw.end()
			if err != nil {
				c.writeFailed(err)
			} else {
				c.sendClose(req)
			}
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if time.Since(refreshed) > timeout/2 {
			c.bw.begin(time.Now().Add(timeout)) // a long run of batches: move the deadline on
			refreshed = time.Now()
		}
		err := c.writeBatch(batch)
		putOut(batch)
		if err != nil {
			c.bw.end()
			c.mu.Lock()
			c.discardLocked()
			c.closeReq = nil
			c.writing = false
			c.mu.Unlock()
			c.writeFailed(err)
			return
		}
	}
}

// writeBatch writes the messages into the batch buffer and flushes it.
func (c *Conn) writeBatch(batch []outMsg) error {
	obs := c.s.obs
	var err error
	var bytes uint64
	for i := range batch {
		e := &batch[i]
		if err == nil {
			if c.bw.direct {
				err = c.bw.writeFrame(e.m.Type, e.m.Data)
			} else {
				err = c.ws.Load().Write(context.Background(), e.m.Type, e.m.Data) // compression: never dropped
			}
			bytes += uint64(len(e.m.Data))
		}
		if obs != nil {
			obs.Written(e.ctx, c, e.m, err)
		}
	}
	if err == nil {
		err = c.bw.flush()
	}
	if err != nil {
		c.s.stats.dropped.Add(uint64(len(batch))) // the peer has none of them for sure
		return err
	}
	c.s.stats.msgsOut.Add(uint64(len(batch)))
	c.s.stats.bytesOut.Add(bytes)
	return nil
}

// writeFailed ends a connection whose write failed or timed out. If it was already closing,
// the cause stays the one that closed it (a write cut by a close frame already sent, or a
// slow consumer's stuck write).
func (c *Conn) writeFailed(err error) {
	if errors.Is(err, errCloseSent) || errors.Is(err, net.ErrClosed) {
		// The close handshake is under way (the peer's close was answered, or ours went out)
		// or over: the reader ends the connection with the code the handshake carries.
		return
	}
	c.abort(websocket.StatusAbnormalClosure, errors.Join(ErrWriteFailed, err), ReasonWriteError)
}

// sendClose does the close handshake, bounded by closeGrace (and WriteTimeout): the peer's
// answer ends the reader, which finishes the connection.
func (c *Conn) sendClose(req *closeReq) {
	c.closeHandshake(req.code, req.reason, min(closeGrace, c.s.opts.WriteTimeout))
	c.mu.Lock()
	c.closeDoneLocked()
	c.mu.Unlock()
}
