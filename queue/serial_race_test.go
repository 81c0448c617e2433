package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// Many producers on many queues at once, each queue going idle between bursts (so that its
// storage is given back and taken again while others still submit): every block runs
// exactly once, in its producer's order.
func TestSerialBurstsFromManyProducersOnManyQueuesRunOnceInOrder(t *testing.T) {
	const queues, producers, bursts, burst = 4, 3, 40, 3*chunkSize + 5
	qs := make([]*Queue, queues)
	for i := range qs {
		qs[i] = NewSerial("bursts")
	}
	var last [queues][producers]int // last[q] is guarded by queue q
	var ran atomic.Int64
	var wg sync.WaitGroup
	for qi, q := range qs {
		for p := range producers {
			wg.Go(func() {
				n := 0
				for range bursts {
					for range burst {
						n++
						seq := n
						q.Async(func() {
							assert.Equal(t, last[qi][p]+1, seq, "queue %d producer %d out of order", qi, p)
							last[qi][p] = seq
							ran.Add(1)
						})
					}
					done := make(chan struct{})
					q.Async(func() { close(done) })
					testutil.Recv(t, done, "the end of a burst")
					ran.Add(-1) // the marker is not counted below
				}
			})
		}
	}
	wg.Wait()
	for _, q := range qs {
		syncDone(t, q)
	}
	require.EqualValues(t, queues*producers*bursts*burst, ran.Load()+int64(queues*producers*bursts))
	for qi, q := range qs {
		st := q.Stats()
		require.Zero(t, st.Pending, "queue %d", qi)
		require.EqualValues(t, producers*bursts*(burst+1), st.Executed, "queue %d", qi)
		require.Zero(t, st.Running, "queue %d", qi)
	}
}

// Close racing with producers: an Async either panics (refused) or its block runs before
// Close returns; nothing is lost and nothing runs after.
func TestSerialCloseRacingWithProducersRunsExactlyTheAcceptedBlocks(t *testing.T) {
	for round := range 20 {
		q := NewSerial("closing")
		const producers = 4
		var accepted, ran atomic.Int64
		var closedAt atomic.Bool
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range producers {
			wg.Go(func() {
				<-start
				for {
					err := q.TryAsync(func() {
						assert.False(t, closedAt.Load(), "a block ran after Close returned")
						ran.Add(1)
					})
					if errors.Is(err, ErrClosed) {
						return
					}
					require.NoError(t, err)
					accepted.Add(1)
				}
			})
		}
		close(start)
		// Let some blocks in first, then close under the producers' feet.
		seen := make(chan struct{})
		q.Async(func() { close(seen) })
		accepted.Add(1)
		testutil.Recv(t, seen, "a block before Close")
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		require.NoError(t, q.Close(ctx), "round %d", round)
		cancel()
		closedAt.Store(true)
		wg.Wait()
		require.Equal(t, accepted.Load(), ran.Load()+1, "round %d: accepted blocks that did not run", round)
		require.Panics(t, func() { q.Async(func() {}) })
		require.ErrorIs(t, q.TryAsync(func() {}), ErrClosed)
		st := q.Stats()
		require.EqualValues(t, accepted.Load(), st.Executed)
		require.Zero(t, st.Pending)
	}
}

// Suspend and Resume racing with producers: no block is lost or runs while suspended, and
// the queue drains once resumed.
func TestSerialSuspendRacingWithProducersLosesNothing(t *testing.T) {
	q := NewSerial("suspend")
	const producers, each = 4, 3_000
	var suspended atomic.Bool
	var ran atomic.Int64
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range each {
				q.Async(func() {
					assert.False(t, suspended.Load(), "a block started while the queue was suspended")
					ran.Add(1)
				})
			}
		})
	}
	for range 50 {
		// Suspend from a block, so that no block is running when the flag is checked.
		done := make(chan struct{})
		q.Async(func() {
			q.Suspend()
			suspended.Store(true)
			close(done)
		})
		testutil.Recv(t, done, "the suspending block")
		suspended.Store(false)
		q.Resume()
	}
	wg.Wait()
	syncDone(t, q)
	require.EqualValues(t, producers*each, ran.Load())
}

// A Sync after Asyncs from the same goroutine sees them all run, whether the queue is idle,
// draining, or being handed from one holder to the next; Syncs from other goroutines race.
func TestSerialSyncAfterAsyncsSeesThemRun(t *testing.T) {
	q := NewSerial("sync")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			n := 0 // guarded by q
			for i := range 500 {
				for range i % 7 {
					q.Async(func() { n++ })
				}
				want := 0
				for j := range i + 1 {
					want += j % 7
				}
				q.Sync(func() {
					assert.Equal(t, want, n, "goroutine %d: a Sync ran before an earlier Async", g)
				})
			}
		})
	}
	wg.Wait()
}
