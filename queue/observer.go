package queue

import (
	"context"
	"time"
)

// BlockKind tells how a block was submitted.
type BlockKind uint8

// The kinds of block an Observer sees.
const (
	BlockAsync   BlockKind = iota // Async, AsyncContext, TryAsync
	BlockBarrier                  // BarrierAsync
	BlockSync                     // Sync, SyncContext, BarrierSync
)

// String names the kind ("async", "barrier", "sync").
func (k BlockKind) String() string {
	switch k {
	case BlockBarrier:
		return "barrier"
	case BlockSync:
		return "sync"
	}
	return "async"
}

// BlockInfo describes one block to an Observer.
type BlockInfo struct {
	Kind     BlockKind
	Enqueued time.Time     // when the block was accepted
	Wait     time.Duration // from accepted to started; set from Started on
	Run      time.Duration // from started to finished; set in Finished
	Panic    any           // in Finished: the recovered panic value, nil if none
	Site     string        // where the block was submitted, with WithCallSites ("" otherwise)
}

// An Observer is told what a queue does; the tracing package implements it. Hooks run inline
// on the queue's hot path, so they must be quick and must not call back into the same queue.
// With no observer a queue pays one nil check per block.
type Observer interface {
	// QueueCreated is called once, when a queue using the observer is made.
	QueueCreated(q *Queue)
	// Enqueued runs on the submitting goroutine when a block is accepted, never for one the
	// queue refused (closed, full, or whose submitter gave up waiting for room). ctx is the ctx of
	// AsyncContext or SyncContext, or for Async, Sync and the barriers the context of the block
	// the caller is running (CurrentContext). The returned context is kept with the block and
	// handed to Started.
	Enqueued(q *Queue, ctx context.Context, kind BlockKind) context.Context
	// Started runs on the goroutine that runs the block, just before it. The returned context
	// is what the block sees (the fn of AsyncContext, CurrentContext inside it) and what
	// Finished gets.
	Started(q *Queue, ctx context.Context, b BlockInfo) context.Context
	// Finished runs after the block returned or panicked.
	Finished(q *Queue, ctx context.Context, b BlockInfo)
	// Rejected is called when TryAsync refuses a block (ErrFull or ErrClosed), or Submit one
	// (ErrClosed).
	Rejected(q *Queue, err error)
	// QueueClosed is called once, when Close is first called on the queue.
	QueueClosed(q *Queue)
}

// Inert is an optional interface of an Observer. A queue made WithObserver(o), where o is
// Inert and o.Inert() reports true at that moment, treats o as absent: no hooks, no clock
// reads, the cost of no observer at all; queues that target it inherit that. The tracing
// package's Observer is inert when its providers are the OpenTelemetry no-op ones.
type Inert interface {
	Inert() bool
}
