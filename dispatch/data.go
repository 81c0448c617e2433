package dispatch

import (
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/queue"
)

// A DataSource coalesces values merged into it from any goroutine and hands their
// combination to a handler on a queue (GCD's DISPATCH_SOURCE_TYPE_DATA_ADD, _OR and
// _REPLACE). Merges made while the handler is pending or running, or while the source is
// suspended, are combined into its next call: a burst of a thousand Merge(1) may reach the
// handler as one call with 1000. None is lost. Between merges it holds nothing but its
// memory. It is created suspended: call Resume.
type DataSource struct {
	source
	fn    func(uint64)
	data  atomic.Uint64
	merge func(*atomic.Uint64, uint64)
}

// NewDataAdd returns a data source whose handler gets the sum of what was merged since its
// last call (wrapping around at 2^64).
func NewDataAdd(q *queue.Queue, fn func(uint64)) *DataSource {
	return newData(q, fn, func(d *atomic.Uint64, n uint64) { d.Add(n) })
}

// NewDataOr returns a data source whose handler gets the bitwise OR of what was merged since
// its last call: a set of flags.
func NewDataOr(q *queue.Queue, fn func(uint64)) *DataSource {
	return newData(q, fn, func(d *atomic.Uint64, n uint64) { d.Or(n) })
}

// NewDataReplace returns a data source whose handler gets the last value merged since its
// last call: the newest state wins.
func NewDataReplace(q *queue.Queue, fn func(uint64)) *DataSource {
	return newData(q, fn, func(d *atomic.Uint64, n uint64) { d.Store(n) })
}

func newData(q *queue.Queue, fn func(uint64), merge func(*atomic.Uint64, uint64)) *DataSource {
	if fn == nil {
		panic("dispatch: a data source with a nil handler")
	}
	d := &DataSource{fn: fn, merge: merge}
	d.init(q, (*dataEvents)(d))
	return d
}

// Merge combines n into the source's pending value and makes sure the handler will run. A
// Merge of 0 does nothing, as in GCD (so a sum that wraps around to exactly 0 is not
// delivered either). Merges after Cancel are dropped. Merge may be called from anywhere,
// the handler and other blocks of the source's queue included. On a full queue (WithLimit)
// it may wait for room, as Async does, until Cancel; a block of that queue is let in at once
// (see queue.Queue.Submit). On a closed queue it returns at once: the source goes quiet.
func (d *DataSource) Merge(n uint64) {
	if n == 0 {
		return
	}
	d.merge(&d.data, n)
	d.fire()
}

// dataEvents is the DataSource seen as the events of its source.
type dataEvents DataSource

func (e *dataEvents) pending() bool { return e.data.Load() != 0 }

func (e *dataEvents) deliver() {
	if v := e.data.Swap(0); v != 0 {
		e.fn(v)
	}
}

func (e *dataEvents) running(bool) {}

func (e *dataEvents) cancel() {}

func (e *dataEvents) join() {}
