package bench

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dispatchkit/dispatchkit/queue"
)

// Starfish (libdispatch's benchmark of that name): starfishQueues serial queues exchange
// messages. Each starts with one message; a message goes to a queue chosen by its own
// xorshift state, which that queue's block advances and passes on. One op is one message
// delivered; libdispatch's budget is under a microsecond. After b.N deliveries every
// message is dropped where it lands, and the op ends when all of them have been.

const starfishQueues = 1000

func starfishNext(x uint32) uint32 {
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	return x
}

// starfish runs the exchange on queues made with opts.
func starfish(b *testing.B, opts ...queue.Option) {
	qs := make([]*queue.Queue, starfishQueues)
	for i := range qs {
		qs[i] = queue.NewSerial("starfish", opts...)
	}
	var hops, dead atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	var deliver func(x uint32)
	deliver = func(x uint32) {
		if hops.Add(1) > n {
			if dead.Add(1) == starfishQueues {
				close(done)
			}
			return
		}
		x = starfishNext(x)
		qs[x%starfishQueues].Async(func() { deliver(x) })
	}
	b.ResetTimer()
	for i := range qs {
		x := uint32(i + 1)
		qs[i].Async(func() { deliver(x) })
	}
	<-done
}

func BenchmarkStarfish(b *testing.B) { starfish(b) }

// The same exchange with the queues' pprof labels off: the labels' cost per message.
func BenchmarkStarfishNoProfileLabels(b *testing.B) { starfish(b, queue.WithProfileLabels(false)) }

// The peer: a goroutine per queue, reading messages from its own channel. Each channel can
// hold every message, so a send never blocks.
func BenchmarkStarfishPeerChannels(b *testing.B) {
	inbox := make([]chan uint32, starfishQueues)
	for i := range inbox {
		inbox[i] = make(chan uint32, starfishQueues)
	}
	var hops, dead atomic.Int64
	done := make(chan struct{})
	n := int64(b.N)
	var wg sync.WaitGroup
	for i := range inbox {
		wg.Go(func() {
			for x := range inbox[i] {
				if hops.Add(1) > n {
					if dead.Add(1) == starfishQueues {
						close(done)
					}
					continue
				}
				x = starfishNext(x)
				inbox[x%starfishQueues] <- x
			}
		})
	}
	b.ResetTimer()
	for i := range inbox {
		inbox[i] <- uint32(i + 1)
	}
	<-done
	b.StopTimer()
	for _, c := range inbox {
		close(c)
	}
	wg.Wait()
}
