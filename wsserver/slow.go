package wsserver

import (
	"context"
	"runtime/debug"

	"github.com/dispatchkit/dispatchkit/queue"
)

// Slow consumers: a connection whose outbound buffer holds SlowMark of its bounds is slow.
// The application hears of it (Options.OnSlow) when it turns slow and when its writer has
// caught up, so that it can demote the connection (fewer updates, a coarser feed) before the
// SlowConsumer policy has to act.

// slowMarks returns the outbound levels, in messages and bytes, at which a connection turns
// slow.
func (o *Options) slowMarks() (msgs, bytes int) {
	mark := o.SlowMark
	if mark <= 0 || mark > 1 {
		mark = defaultSlowMark
	}
	return max(1, int(float64(o.SendBuffer)*mark)), max(1, int(float64(o.SendBufferBytes)*mark))
}

// turnSlowLocked marks c slow when its buffer has reached a slow mark, and reports whether
// it just turned slow.
func (c *Conn) turnSlowLocked() bool {
	if c.slow || (len(c.out) < c.s.slowMsgs && c.outBytes < c.s.slowBytes) {
		return false
	}
	c.slow = true
	c.s.stats.turnedSlow.Add(1)
	return true
}

// notifySlow runs OnSlow on the connection's queue, so that it sees the connection's state
// as its other callbacks do; never after OnClose.
func (c *Conn) notifySlow(slow bool) {
	fn := c.s.opts.OnSlow
	if fn == nil {
		return
	}
	c.q.Async(func() {
		if c.over {
			return
		}
		defer func() {
			if r := recover(); r != nil {
				c.panicked(r, debug.Stack())
			}
		}()
		fn(c, slow)
	})
}

// Outbound returns what waits in the connection's outbound buffer for its writer: messages
// and payload bytes, the measure SendBuffer and SendBufferBytes bound (a batch the writer
// has taken and is writing is no longer counted). It may be called from any goroutine.
func (c *Conn) Outbound() (messages, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out), c.outBytes
}

// Slow reports whether the connection is slow now: its outbound buffer reached
// Options.SlowMark and its writer has not caught up since.
func (c *Conn) Slow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slow
}

// SendKeyed sends m as the latest value for key. Under the Conflate policy a message with
// the same key still waiting in the outbound buffer is replaced by m, in its place (counted
// as Conflated and Dropped), so a slow client gets the latest value of every key instead of
// every value; under the other policies it is Send. It never blocks; its errors are Send's.
func (c *Conn) SendKeyed(key string, m Message) error {
	var ctx context.Context
	if c.s.obs != nil {
		ctx = queue.CurrentContext()
	}
	return c.enqueueKey(ctx, key, m)
}
