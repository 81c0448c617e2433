package bench

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/alitto/pond/v2"
	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/panjf2000/ants/v2"
	"golang.org/x/sync/errgroup"
)

var empty = func() {}

// Serial: submit an empty block, drained (the last one is waited for).
//
// Benchmarks whose work finishes after the submitting loop use b.N rather than b.Loop:
// b.Loop stops the timer when it returns false, which would leave the drain (or the
// wait for the last task) out of the measurement and flatter whoever queues without bound.

func BenchmarkSerialAsync(b *testing.B) {
	q := queue.NewSerial("bench")
	b.ResetTimer()
	for range b.N {
		q.Async(empty)
	}
	q.Sync(empty)
}

// SerialAsync with the queue at each place in a cache line that the allocator can give it
// (a Queue is 240 bytes, placed at a multiple of 16): what a submitter and the drainer write
// must not share a line wherever the queue landed.
func BenchmarkSerialAsyncPlaced(b *testing.B) {
	for _, at := range []uintptr{0, 16, 32, 48} {
		b.Run(fmt.Sprintf("at-%d", at), func(b *testing.B) {
			var others []*queue.Queue // kept until the end, so that their places are not reused
			q := queue.NewSerial("bench")
			for uintptr(unsafe.Pointer(q))%64 != at {
				others = append(others, q)
				q = queue.NewSerial("bench")
			}
			b.ResetTimer()
			for range b.N {
				q.Async(empty)
			}
			q.Sync(empty)
			runtime.KeepAlive(others)
		})
	}
}

func BenchmarkSerialAsyncNoProfileLabels(b *testing.B) {
	q := queue.NewSerial("bench", queue.WithProfileLabels(false))
	b.ResetTimer()
	for range b.N {
		q.Async(empty)
	}
	q.Sync(empty)
}

// BenchmarkSerialAsyncSubmitOnly is the submitter's side of SerialAsync alone: a round of
// 4,096 Asyncs onto a suspended queue (no drainer runs meanwhile), then Resume and a Sync
// with the timer stopped, so that the chunks the blocks went in come back to the pool and
// the next round reuses them (the allocator does not dominate). cpu-ns/op is the submitting
// thread's own CPU time per Async (CLOCK_THREAD_CPUTIME_ID around each round, the goroutine
// locked to its thread): it holds under load, where wall time does not. Compare it with
// SerialPeerMutexAppend, the same two locked instructions per op and nothing else.
func BenchmarkSerialAsyncSubmitOnly(b *testing.B) {
	const round = 4096
	q := queue.NewSerial("bench")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n += round {
		k := min(round, b.N-n)
		q.Suspend()
		t := threadCPU()
		for range k {
			q.Async(empty)
		}
		cpu += threadCPU() - t
		b.StopTimer()
		q.Resume()
		q.Sync(empty)
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

func BenchmarkSerialPeerChannel(b *testing.B) {
	c := make(chan func(), 1024)
	var wg sync.WaitGroup
	wg.Go(func() {
		for f := range c {
			f()
		}
	})
	b.ResetTimer()
	for range b.N {
		c <- empty
	}
	close(c)
	wg.Wait()
}

func BenchmarkSerialPeerMutexDrainer(b *testing.B) {
	var mu sync.Mutex
	var pending []func()
	wake := make(chan struct{}, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var batch []func()
		for {
			select {
			case <-wake:
			case <-stop:
				mu.Lock()
				batch, pending = pending, batch[:0]
				mu.Unlock()
				for _, f := range batch {
					f()
				}
				return
			}
			mu.Lock()
			batch, pending = pending, batch[:0]
			mu.Unlock()
			for _, f := range batch {
				f()
			}
		}
	})
	b.ResetTimer()
	for range b.N {
		mu.Lock()
		pending = append(pending, empty)
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	close(stop)
	wg.Wait()
}

func BenchmarkSerialPeerMutexAppend(b *testing.B) {
	var mu sync.Mutex
	s := make([]func(), 0, 4096)
	for b.Loop() {
		mu.Lock()
		s = append(s, empty)
		if len(s) == cap(s) {
			s = s[:0]
		}
		mu.Unlock()
	}
}

// Serial as a lock: P goroutines increment shared state.

func BenchmarkLockGuardedAsync(b *testing.B) {
	g := queue.NewGuarded(0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Async(func(n *int) { *n++ })
		}
	})
	g.Sync(func(*int) {})
}

func BenchmarkLockQueueSync(b *testing.B) {
	q := queue.NewSerial("lock")
	n := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			q.Sync(func() { n++ })
		}
	})
}

// The same with the queue's profiler labels off: what a Sync costs without the pair of
// pprof.SetGoroutineLabels calls around its block.
func BenchmarkLockQueueSyncNoProfileLabels(b *testing.B) {
	q := queue.NewSerial("lock", queue.WithProfileLabels(false))
	n := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			q.Sync(func() { n++ })
		}
	})
}

func BenchmarkLockPeerMutex(b *testing.B) {
	var mu sync.Mutex
	n := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			mu.Unlock()
		}
	})
}

func BenchmarkLockPeerChannelOwner(b *testing.B) {
	c := make(chan func(), 1024)
	done := make(chan struct{})
	go func() {
		for f := range c {
			f()
		}
		close(done)
	}()
	n := 0
	inc := func() { n++ }
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c <- inc
		}
	})
	close(c)
	<-done
}

// Concurrent: submit N small tasks and wait for all of them.

func task(wg *sync.WaitGroup) func() {
	return func() {
		x := 0
		for i := range 10 {
			x += i
		}
		_ = x
		wg.Done()
	}
}

func BenchmarkConcurrentAsync(b *testing.B) {
	q := queue.NewConcurrent("bench")
	var wg sync.WaitGroup
	f := task(&wg)
	b.ResetTimer()
	for range b.N {
		wg.Add(1)
		q.Async(f)
	}
	wg.Wait()
}

func BenchmarkConcurrentPeerGoWaitGroup(b *testing.B) {
	var wg sync.WaitGroup
	f := task(&wg)
	b.ResetTimer()
	for range b.N {
		wg.Add(1)
		go f()
	}
	wg.Wait()
}

func BenchmarkConcurrentPeerAnts(b *testing.B) {
	p, _ := ants.NewPool(runtime.GOMAXPROCS(0) * 64)
	defer p.Release()
	var wg sync.WaitGroup
	f := task(&wg)
	b.ResetTimer()
	for range b.N {
		wg.Add(1)
		_ = p.Submit(f)
	}
	wg.Wait()
	b.StopTimer() // not the pool's teardown
}

func BenchmarkConcurrentPeerPond(b *testing.B) {
	p := pond.NewPool(runtime.GOMAXPROCS(0))
	defer p.StopAndWait()
	var wg sync.WaitGroup
	f := task(&wg)
	b.ResetTimer()
	for range b.N {
		wg.Add(1)
		_ = p.Go(f)
	}
	wg.Wait()
	b.StopTimer() // not the pool's teardown
}

func BenchmarkConcurrentPeerErrgroup(b *testing.B) {
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	f := task(&wg)
	b.ResetTimer()
	for range b.N {
		wg.Add(1)
		g.Go(func() error { f(); return nil })
	}
	_ = g.Wait()
	wg.Wait()
}

// Idle cost: bytes and goroutines per idle queue, against a goroutine and a channel per
// "queue". Ours creates 1,000,000 queues, as the bar says (under 256 MiB); the peer 100,000,
// since a million goroutines would take gigabytes of a shared machine.

func BenchmarkIdleQueue(b *testing.B) {
	idleCost(b, 1_000_000, func(n int) (func(int), func()) {
		qs := make([]*queue.Queue, n)
		return func(i int) { qs[i] = queue.NewSerial("conn") }, func() { clear(qs) }
	})
}

func BenchmarkIdlePeerGoroutineAndChannel(b *testing.B) {
	idleCost(b, 100_000, func(n int) (func(int), func()) {
		cs := make([]chan func(), n)
		return func(i int) {
				c := make(chan func())
				go func() {
					for f := range c {
						f()
					}
				}()
				cs[i] = c
			}, func() {
				for _, c := range cs {
					close(c)
				}
			}
	})
}

// idleCost creates n "queues" and measures the heap and stack they add and their
// goroutines. setup allocates what holds them (not counted) and returns how to create
// queue i and how to release them all.
func idleCost(b *testing.B, n int, setup func(n int) (create func(i int), release func())) {
	var before, after runtime.MemStats
	for b.Loop() {
		create, release := setup(n)
		runtime.GC()
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		for i := range n {
			create(i)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		bytes := float64(after.HeapAlloc-before.HeapAlloc) + float64(after.StackInuse-before.StackInuse)
		b.ReportMetric(bytes/float64(n), "bytes/queue")
		b.ReportMetric(bytes*1e6/float64(n)/(1<<20), "MiB/1M-queues")
		b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/queue")
		release()
	}
}

// Ping-pong: one block hops between two serial queues (libdispatch's classic).

func BenchmarkPingPong(b *testing.B) {
	q1, q2 := queue.NewSerial("ping"), queue.NewSerial("pong")
	done := make(chan struct{})
	var left atomic.Int64
	left.Store(int64(b.N))
	var ping, pong func()
	ping = func() {
		if left.Add(-1) <= 0 {
			close(done)
			return
		}
		q2.Async(pong)
	}
	pong = func() { q1.Async(ping) }
	b.ResetTimer()
	q1.Async(ping)
	<-done
}

func BenchmarkPingPongPeerChannels(b *testing.B) {
	c1, c2 := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		for range c2 {
			c1 <- struct{}{}
		}
	}()
	go func() {
		for range b.N {
			c2 <- struct{}{}
			<-c1
		}
		close(c2)
		close(done)
	}()
	<-done
}

// Idle after each block: a serial queue that gets one block, runs it and goes idle before the
// next arrives, as a WebSocket connection's queue does when it answers one message at a time
// (the server's common case). One op is one block submitted from outside the queue and its
// reply received. The peer is a goroutine per "connection" reading a channel of funcs.

func BenchmarkSerialIdleRoundTrip(b *testing.B) {
	q := queue.NewSerial("conn")
	reply := make(chan struct{})
	f := func() { reply <- struct{}{} }
	for b.Loop() {
		q.Async(f)
		<-reply
	}
}

func BenchmarkSerialIdleRoundTripPeerChannel(b *testing.B) {
	c, stop := funcReader()
	defer stop()
	reply := make(chan struct{})
	f := func() { reply <- struct{}{} }
	for b.Loop() {
		c <- f
		<-reply
	}
}

// funcReader is the round trips' peer "connection": a goroutine running the funcs sent on c,
// until stop.
func funcReader() (c chan<- func(), stop func()) {
	ch := make(chan func(), 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for f := range ch {
			f()
		}
	})
	return ch, func() {
		close(ch)
		wg.Wait()
	}
}

// Sparse: the same round trip with a pause after each reply that outlasts an idle worker's
// watch for work, as a mostly idle server's connection sees its messages: each block finds the
// pool without a worker. Read cpu-ns/op, the process's CPU per op (every thread's, user and
// system) less the pause's own: what such a message costs. The pause is a fixed computation by
// the submitter (~20 µs), not a sleep: a sleep's own CPU (timers, idle Ps, the OS) varies more
// from run to run than the differences looked for here. Wall time is mostly the pause.

// sparse runs a sparse benchmark's loop; send hands the block over and waits for its reply.
// The pause's CPU is read on its thread (a goroutine that does not block almost never moves in
// 20 µs), and the median pause is subtracted, so a rare move does not count.
func sparse(b *testing.B, send func()) {
	var pauses []time.Duration
	start := processCPU()
	for b.Loop() {
		send()
		t := threadCPU()
		sparsePause()
		pauses = append(pauses, threadCPU()-t)
	}
	end := processCPU()
	if n := len(pauses); start >= 0 && end >= 0 && n > 0 {
		slices.Sort(pauses)
		pause := pauses[n/2]
		b.ReportMetric(float64(end-start-pause*time.Duration(n))/float64(n), "cpu-ns/op")
		b.ReportMetric(float64(pause), "pause-ns")
	}
}

var sparseSink uint64

// sparsePause computes for ~20 µs; the result goes to sparseSink, so it cannot be skipped.
func sparsePause() {
	x := sparseSink
	for i := range uint64(20000) {
		x = x*6364136223846793005 + i
	}
	sparseSink = x
}

func BenchmarkSerialSparseRoundTrip(b *testing.B) {
	q := queue.NewSerial("conn")
	reply := make(chan struct{})
	f := func() { reply <- struct{}{} }
	sparse(b, func() {
		q.Async(f)
		<-reply
	})
}

func BenchmarkSerialSparseRoundTripPeerChannel(b *testing.B) {
	c, stop := funcReader()
	defer stop()
	reply := make(chan struct{})
	f := func() { reply <- struct{}{} }
	sparse(b, func() {
		c <- f
		<-reply
	})
}
