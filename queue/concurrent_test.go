package queue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// tracker records how many blocks run at once.
type tracker struct {
	mu        sync.Mutex
	now, most int
}

func (k *tracker) enter() {
	k.mu.Lock()
	k.now++
	k.most = max(k.most, k.now)
	k.mu.Unlock()
}

func (k *tracker) leave() {
	k.mu.Lock()
	k.now--
	k.mu.Unlock()
}

func (k *tracker) max() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.most
}

func TestConcurrentRunsUpToItsWidthAtOnce(t *testing.T) {
	withProcs(t, 4)
	q := NewConcurrent("wide", WithWidth(3))
	require.Equal(t, 3, q.Width())
	gates := []*gate{newGate(), newGate(), newGate(), newGate()}
	var k tracker
	for _, g := range gates {
		q.Async(func() { k.enter(); g.block(); k.leave() })
	}
	for i := range 3 {
		testutil.Recv(t, gates[i].started, "one of the first three blocks")
	}
	notYet(t, gates[3].started, "a fourth block on a width-3 queue")
	gates[0].open()
	testutil.Recv(t, gates[3].started, "the fourth block once one finished")
	for _, g := range gates[1:] {
		g.open()
	}
	syncDone(t, q)
	require.Equal(t, 3, k.max())
}

func TestConcurrentStartsBlocksInFIFOOrder(t *testing.T) {
	q := NewConcurrent("fifo", WithWidth(1))
	var got []int
	for i := range 1000 {
		q.Async(func() { got = append(got, i) })
	}
	syncDone(t, q)
	for i, v := range got {
		require.Equal(t, i, v)
	}
}

func TestConcurrentWithoutWidthIsLimitedByGOMAXPROCS(t *testing.T) {
	withProcs(t, 2)
	q := NewConcurrent("default")
	require.Equal(t, 2, q.Width())
	// Two blocks that each wait for the other can only finish if two run at once.
	a, b := make(chan struct{}), make(chan struct{})
	done := make(chan struct{}, 2)
	q.Async(func() { close(a); <-b; done <- struct{}{} })
	q.Async(func() { close(b); <-a; done <- struct{}{} })
	testutil.Recv(t, done, "the first of two blocks that need each other")
	testutil.Recv(t, done, "the second of two blocks that need each other")

	runtimeProcs(t, 1)
	require.Equal(t, 1, q.Width(), "Width must follow a GOMAXPROCS change")
}

func runtimeProcs(t *testing.T, n int) {
	t.Helper()
	withProcs(t, n)
}

func TestBarrierWaitsForEarlierBlocksRunsAloneAndHoldsLaterOnes(t *testing.T) {
	withProcs(t, 4)
	q := NewConcurrent("rw", WithWidth(4))
	before := []*gate{newGate(), newGate()}
	for _, g := range before {
		q.Async(g.block)
	}
	for _, g := range before {
		testutil.Recv(t, g.started, "a block before the barrier")
	}
	var running atomic.Int32
	barrier := make(chan struct{})
	barrierRan := make(chan struct{})
	q.BarrierAsync(func() {
		close(barrier)
		assert.Zero(t, running.Load(), "the barrier ran beside other blocks")
		<-barrierRan
	})
	after := make(chan struct{})
	q.Async(func() { running.Add(1); close(after); running.Add(-1) })

	notYet(t, barrier, "the barrier while earlier blocks run")
	before[0].open()
	notYet(t, barrier, "the barrier while one earlier block runs")
	before[1].open()
	testutil.Recv(t, barrier, "the barrier")
	notYet(t, after, "a block submitted after a running barrier")
	close(barrierRan)
	testutil.Recv(t, after, "the block after the barrier")
	syncDone(t, q)
}

func TestBarrierSyncOnConcurrentQueue(t *testing.T) {
	withProcs(t, 4) // the plain Sync below runs beside a block: it needs a second slot (-cpu 1)
	q := NewConcurrent("c", WithWidth(4))
	var n atomic.Int32
	for range 100 {
		q.Async(func() { n.Add(1) })
	}
	q.BarrierSync(func() { require.EqualValues(t, 100, n.Load()) })
	// A plain Sync on a concurrent queue runs beside others.
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "a long block")
	ran := false
	q.Sync(func() { ran = true })
	require.True(t, ran)
	g.open()
	syncDone(t, q)
}

func TestGlobalAcceptsBlocksAndIgnoresSuspend(t *testing.T) {
	g := Global(Default)
	require.Nil(t, g.Target())
	g.Suspend() // no effect, as in GCD
	done := make(chan struct{})
	g.Async(func() { close(done) })
	testutil.Recv(t, done, "a block on Global")
	g.Resume()
	require.Error(t, g.Close(t.Context()))
	ran := false
	g.Sync(func() { ran = true })
	require.True(t, ran)
	require.True(t, g.Stats().Global)
}

func TestBarrierSyncContextGivesUpBeforeItStartsAndRunsAloneOtherwise(t *testing.T) {
	q := NewConcurrent("c", WithWidth(4))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() {
		errs <- q.BarrierSyncContext(ctx, func(context.Context) { t.Error("a barrier whose ctx ended before it started ran") })
	}()
	notYet(t, errs, "a barrier behind a running block")
	cancel()
	require.ErrorIs(t, testutil.Recv(t, errs, "the barrier giving up"), context.Canceled)

	var running atomic.Int32
	go func() {
		errs <- q.BarrierSyncContext(context.Background(), func(context.Context) { running.Store(int32(q.Stats().Running)) })
	}()
	notYet(t, errs, "a barrier behind a running block")
	g.open()
	require.NoError(t, testutil.Recv(t, errs, "the barrier"))
	require.EqualValues(t, 1, running.Load(), "the barrier ran beside another block")

	// From a block of the queue, it would wait for that block.
	q.Async(func() { errs <- q.BarrierSyncContext(context.Background(), func(context.Context) {}) })
	require.ErrorIs(t, testutil.Recv(t, errs, "a barrier from the queue's own block"), ErrWouldDeadlock)
	require.NoError(t, q.Close(context.Background()))
	require.ErrorIs(t, q.BarrierSyncContext(context.Background(), func(context.Context) {}), ErrClosed)
}
