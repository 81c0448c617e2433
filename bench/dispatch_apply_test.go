package bench

import (
	"testing"

	"github.com/dispatchkit/dispatchkit/dispatch"
	"github.com/dispatchkit/dispatchkit/queue"
)

// Apply over uneven iterations: the second half of the indexes costs ten times the first, as
// when rows of an image or buckets of a histogram differ. A split fixed in advance hands all
// the heavy ones to the last goroutine; Apply's participants take runs of indexes as they
// go, so they even out. Same 10,000 indexes, same arithmetic as BenchmarkApply.

func unevenChunk(i int) {
	if i >= chunks/2 {
		mix(i, 400)
	} else {
		mix(i, 40)
	}
}

func BenchmarkApplyUneven(b *testing.B) {
	q := queue.NewConcurrent("apply")
	for b.Loop() {
		dispatch.Apply(q, chunks, unevenChunk)
	}
}

func BenchmarkApplyUnevenPeerHandSplit(b *testing.B) {
	for b.Loop() {
		handSplit(unevenChunk)
	}
}

// Apply called from a block of a serial queue (a connection's callback, say) onto the Global
// queue: it must fan out as from a plain goroutine (compare with BenchmarkApply), not run
// inline because the caller's queue targets Global.
func BenchmarkApplyFromSerialBlock(b *testing.B) {
	s := queue.NewSerial("caller")
	g := queue.Global(queue.Default)
	for b.Loop() {
		done := make(chan struct{})
		s.Async(func() {
			dispatch.Apply(g, chunks, chunk)
			close(done)
		})
		<-done
	}
}
