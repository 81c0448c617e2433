package queue

import "errors"

var (
	// ErrFull is returned by TryAsync when a queue made WithLimit already holds its limit of
	// pending blocks.
	ErrFull = errors.New("queue: full")
	// ErrClosed is returned when a block is submitted to a queue after Close.
	ErrClosed = errors.New("queue: closed")
	// ErrWouldDeadlock is returned by SyncContext (and is the panic value's cause in Sync) when
	// the queue it would wait for is busy running the caller itself.
	ErrWouldDeadlock = errors.New("queue: Sync would deadlock")
	// ErrGoexit is what an Observer's Finished gets as BlockInfo.Panic for a block that ended
	// with runtime.Goexit (t.FailNow, require.* in a test). Such a block counts as executed and
	// its queue goes on, as after a handled panic; the panic handler is not called.
	ErrGoexit = errors.New("queue: the block called runtime.Goexit")
)
