package bench

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/dispatchkit/dispatchkit/dispatch"
	"github.com/dispatchkit/dispatchkit/queue"
	"golang.org/x/sync/errgroup"
)

// Apply over a CPU-bound loop: 10,000 chunks of arithmetic.

const chunks = 10_000

var sink [chunks]uint64

// mix does rounds steps of a linear congruential generator for index i.
func mix(i, rounds int) {
	x := uint64(i)
	for range rounds {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink[i] = x
}

func chunk(i int) { mix(i, 200) }

// handSplit is the peer of Apply: chunks indexes cut into GOMAXPROCS fixed ranges, one
// goroutine each.
func handSplit(fn func(int)) {
	p := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range p {
		wg.Go(func() {
			for i := w * chunks / p; i < (w+1)*chunks/p; i++ {
				fn(i)
			}
		})
	}
	wg.Wait()
}

func BenchmarkApply(b *testing.B) {
	q := queue.NewConcurrent("apply")
	for b.Loop() {
		dispatch.Apply(q, chunks, chunk)
	}
}

func BenchmarkApplyPeerHandSplit(b *testing.B) {
	for b.Loop() {
		handSplit(chunk)
	}
}

// Group.Async + Wait of 100,000 tiny blocks.

const tiny = 100_000

func BenchmarkGroupAsyncWait(b *testing.B) {
	q := queue.NewConcurrent("group")
	for b.Loop() {
		var g dispatch.Group
		for range tiny {
			g.Async(q, empty)
		}
		_ = g.Wait(context.Background())
	}
}

func BenchmarkGroupPeerErrgroup(b *testing.B) {
	for b.Loop() {
		var g errgroup.Group
		g.SetLimit(runtime.GOMAXPROCS(0))
		for range tiny {
			g.Go(func() error { return nil })
		}
		_ = g.Wait()
	}
}

func BenchmarkGroupPeerWaitGroupGo(b *testing.B) {
	for b.Loop() {
		var wg sync.WaitGroup
		for range tiny {
			wg.Go(empty)
		}
		wg.Wait()
	}
}
