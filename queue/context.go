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

// setCurrent records ctx as the caller's current context and returns what restores the
// previous one.
func setCurrent(ctx context.Context) func() {
	g := goid.G()
	prev, had := current.Swap(g, ctx)
	return func() {
		if had {
			current.Store(g, prev)
		} else {
			current.Delete(g)
		}
	}
}
