package queue

import (
	"sync"
	"testing"

	"github.com/dispatchkit/dispatchkit/internal/goid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestSerialRunsBlocksInFIFOOrderOneAtATime(t *testing.T) {
	q := NewSerial("serial")
	const n = 10_000
	var got []int // no lock: the queue owns it
	running := 0
	for i := range n {
		q.Async(func() {
			running++
			assert.Equal(t, 1, running, "two blocks of a serial queue overlapped")
			got = append(got, i)
			running--
		})
	}
	syncDone(t, q)
	require.Len(t, got, n)
	for i, v := range got {
		require.Equal(t, i, v)
	}
}

func TestSerialOrderHoldsForManySubmitters(t *testing.T) {
	q := NewSerial("serial")
	const producers, each = 8, 2_000
	last := make([]int, producers) // guarded by q
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := 1; i <= each; i++ {
				q.Async(func() {
					assert.Equal(t, i-1, last[p], "producer %d's blocks ran out of order", p)
					last[p] = i
				})
			}
		})
	}
	wg.Wait()
	syncDone(t, q)
	for p := range producers {
		require.Equal(t, each, last[p])
	}
}

func TestBarrierOnSerialIsAnOrdinaryBlock(t *testing.T) {
	q := NewSerial("serial")
	var got []string
	q.Async(func() { got = append(got, "a") })
	q.BarrierAsync(func() { got = append(got, "barrier") })
	q.Async(func() { got = append(got, "b") })
	q.BarrierSync(func() { got = append(got, "sync") })
	require.Equal(t, []string{"a", "barrier", "b", "sync"}, got)
}

func TestSyncRunsOnTheCallersGoroutineAfterEarlierBlocks(t *testing.T) {
	q := NewSerial("serial")
	g := newGate()
	q.Async(g.block)
	var order []string
	q.Async(func() { order = append(order, "async") })
	testutil.Recv(t, g.started, "the first block")

	me := goid.G()
	done := make(chan uintptr)
	go func() {
		var ran uintptr
		q.Sync(func() {
			ran = goid.G()
			order = append(order, "sync")
		})
		done <- ran
	}()
	notYet(t, done, "Sync behind a running block")
	g.open()
	ran := testutil.Recv(t, done, "Sync")
	require.NotEqual(t, me, ran)
	require.Equal(t, []string{"async", "sync"}, order)

	// On an idle queue, Sync runs right here.
	var here uintptr
	q.Sync(func() { here = goid.G() })
	require.Equal(t, me, here)
}

func TestSyncReturnsTheBlocksWritesToTheCaller(t *testing.T) {
	q := NewSerial("serial")
	x := 0
	for range 100 {
		q.Async(func() { x++ })
	}
	var seen int
	q.Sync(func() { seen = x })
	require.Equal(t, 100, seen)
}

func TestGuardedIncrementsFromManyGoroutinesWithoutALock(t *testing.T) {
	g := NewGuarded(map[string]int{}, WithLabel("counts"))
	require.Equal(t, "counts", g.Queue().Label())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				g.Async(func(m *map[string]int) { (*m)["hits"]++ })
			}
		})
	}
	wg.Wait()
	var hits int
	g.Sync(func(m *map[string]int) { hits = (*m)["hits"] })
	require.Equal(t, 4000, hits)
}
