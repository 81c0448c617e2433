package dispatch

import (
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/dispatchkit/dispatchkit/queue"
	"github.com/stretchr/testify/require"
)

func TestApplyRunsEveryIndexExactlyOnce(t *testing.T) {
	for _, q := range []*queue.Queue{queue.NewConcurrent("c"), queue.NewSerial("s"), queue.Global(queue.Default)} {
		const n = 10_000
		counts := make([]atomic.Int32, n)
		Apply(q, n, func(i int) { counts[i].Add(1) })
		for i := range counts {
			require.EqualValues(t, 1, counts[i].Load(), "index %d on %s", i, q.Label())
		}
	}
	Apply(queue.NewSerial("s"), 0, func(int) { t.Fatal("n = 0 must run nothing") })
}

func TestApplyRunsInParallelUpToTheWidth(t *testing.T) {
	old := runtime.GOMAXPROCS(4)
	defer runtime.GOMAXPROCS(old)
	q := queue.NewConcurrent("pair", queue.WithWidth(2))
	// Two iterations that wait for each other finish only if both run at once.
	a, b := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		Apply(q, 2, func(i int) {
			if i == 0 {
				close(a)
				<-b
			} else {
				close(b)
				<-a
			}
		})
		close(done)
	}()
	recv(t, done, "two iterations that need each other")

	var running, most atomic.Int32
	Apply(q, 200, func(int) {
		v := running.Add(1)
		for {
			m := most.Load()
			if v <= m || most.CompareAndSwap(m, v) {
				break
			}
		}
		runtime.Gosched()
		running.Add(-1)
	})
	require.LessOrEqual(t, most.Load(), int32(2), "more iterations at once than the width")
}

func TestApplyOnASerialQueueRunsInOrder(t *testing.T) {
	q := queue.NewSerial("s")
	var got []int
	Apply(q, 100, func(i int) { got = append(got, i) })
	for i, v := range got {
		require.Equal(t, i, v)
	}
}

func TestNestedApplyRunsInline(t *testing.T) {
	q := queue.NewConcurrent("nested", queue.WithWidth(2))
	var total atomic.Int32
	Apply(q, 4, func(int) {
		Apply(q, 4, func(int) { total.Add(1) })
	})
	require.EqualValues(t, 16, total.Load())
	s := queue.NewSerial("s")
	s.Sync(func() { Apply(s, 3, func(int) { total.Add(1) }) })
	require.EqualValues(t, 19, total.Load())
}

func TestApplyPanicReachesTheCaller(t *testing.T) {
	q := queue.NewConcurrent("p")
	var ran atomic.Int32
	require.PanicsWithValue(t, "boom at 7", func() {
		Apply(q, 1000, func(i int) {
			ran.Add(1)
			if i == 7 {
				panic("boom at 7")
			}
		})
	})
	require.Less(t, ran.Load(), int32(1000), "the others stop taking indexes")
	require.PanicsWithValue(t, "serial", func() { Apply(queue.NewSerial("s"), 3, func(int) { panic("serial") }) })
}
