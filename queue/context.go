package queue

import (
	"context"
	"sync"

	"github.com/dispatchkit/dispatchkit/internal/goid"
)

// current maps a goroutine to the context of the block it is running, for blocks that have
// one (AsyncContext, SyncContext, or any block of an observed queue). Plain blocks never
// touch it.
var current sync.Map // goroutine (uintptr) -> context.Context

// CurrentContext returns the context of the block the caller is running: the ctx of
// AsyncContext or SyncContext, as an Observer may have wrapped it (a tracing span). Outside
// such a block it returns context.Background(). It lets code deep inside a block, such as a
// WebSocket Send, find the trace it belongs to without threading a ctx through.
func CurrentContext() context.Context {
	if v, ok := current.Load(goid.G()); ok {
		return v.(context.Context)
	}
	return context.Background()
}

// saved is what swapCurrent replaced, for restore.
type saved struct {
	g    uintptr
	prev any
	had  bool // the goroutine had a current context before
	set  bool // swapCurrent recorded one
}

// swapCurrent records ctx as the caller's current context. Background is recorded only
// when it has to hide an outer block's context: observed blocks without a context of their
// own then cost no map write.
func swapCurrent(ctx context.Context) saved {
	g := goid.G()
	if ctx == context.Background() {
		if _, ok := current.Load(g); !ok {
			return saved{}
		}
	}
	prev, had := current.Swap(g, ctx)
	return saved{g: g, prev: prev, had: had, set: true}
}

// restore puts back what swapCurrent replaced.
func (s saved) restore() {
	switch {
	case !s.set:
	case s.had:
		current.Store(s.g, s.prev)
	default:
		current.Delete(s.g)
	}
}
