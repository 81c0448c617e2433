package queue

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestSuspendStopsNewBlocksAndResumeBalancesIt(t *testing.T) {
	q := NewSerial("s")
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "a running block")
	q.Suspend()
	q.Suspend()
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	g.open() // the running block finishes; the next one must not start
	notYet(t, ran, "a block on a suspended queue")
	require.True(t, q.Stats().Suspended)
	q.Resume()
	notYet(t, ran, "a block on a queue suspended twice and resumed once")
	q.Resume()
	testutil.Recv(t, ran, "the block after Resume")
	require.PanicsWithValue(t,
		`queue: Resume of "s", which is not suspended (unbalanced Resume; use Activate for an Inactive queue)`,
		q.Resume)
}

func TestSuspendStopsAConcurrentQueueAndSyncWaitsForResume(t *testing.T) {
	q := NewConcurrent("c", WithWidth(2))
	q.Suspend()
	var n atomic.Int32
	for range 10 {
		q.Async(func() { n.Add(1) })
	}
	done := make(chan struct{})
	go func() {
		q.Sync(func() {})
		close(done)
	}()
	notYet(t, done, "Sync on a suspended queue")
	require.Zero(t, n.Load())
	q.Resume()
	testutil.Recv(t, done, "Sync after Resume")
	// The Sync started once the blocks before it had started; the last two may still run.
	syncDone(t, q)
	require.EqualValues(t, 10, n.Load())
}

func TestInactiveQueueRunsNothingUntilActivate(t *testing.T) {
	q := NewSerial("lazy", Inactive())
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	notYet(t, ran, "a block on an inactive queue")
	require.True(t, q.Stats().Inactive)
	require.Panics(t, q.Resume, "Resume of an inactive queue must panic")
	q.Activate()
	testutil.Recv(t, ran, "the block after Activate")
	q.Activate() // again: nothing
	syncDone(t, q)
}

func TestLimitMakesAsyncWaitAndTryAsyncFail(t *testing.T) {
	q := NewSerial("bounded", WithLimit(2))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	q.Async(func() {})
	q.Async(func() {})
	require.ErrorIs(t, q.TryAsync(func() {}), ErrFull)
	require.Equal(t, 2, q.Stats().Pending)
	require.EqualValues(t, 1, q.Stats().Rejected)

	returned := make(chan struct{})
	go func() {
		q.Async(func() {})
		close(returned)
	}()
	notYet(t, returned, "Async on a full queue")

	// Sync is not counted by the limit: it waits in line, but is not refused.
	synced := make(chan struct{})
	go func() {
		q.Sync(func() {})
		close(synced)
	}()
	g.open()
	testutil.Recv(t, returned, "Async once there was room")
	testutil.Recv(t, synced, "Sync on a limited queue")
	syncDone(t, q)
	require.NoError(t, q.TryAsync(func() {}))
	syncDone(t, q)
}

func TestLimitedQueueBlockCanSubmitToItself(t *testing.T) {
	q := NewSerial("self-feeding", WithLimit(1))
	done := make(chan struct{})
	// A running block is no longer pending, so it may submit one more.
	q.Async(func() { q.Async(func() { close(done) }) })
	testutil.Recv(t, done, "the block submitted from a block")
}

func TestAsyncContextWaitingForRoomGivesUpWithItsContext(t *testing.T) {
	q := NewSerial("bounded", WithLimit(1))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	q.Async(func() {})
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	ran := atomic.Bool{}
	go func() {
		q.AsyncContext(ctx, func(context.Context) { ran.Store(true) })
		close(returned)
	}()
	notYet(t, returned, "AsyncContext on a full queue")
	cancel()
	testutil.Recv(t, returned, "AsyncContext after its ctx ended")
	g.open()
	syncDone(t, q)
	require.False(t, ran.Load())
	require.EqualValues(t, 1, q.Stats().Cancelled)
}

func TestAsyncContextSkipsABlockWhoseContextEndedBeforeItStarted(t *testing.T) {
	q := NewSerial("s")
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	ctx, cancel := context.WithCancel(context.Background())
	ran := atomic.Bool{}
	got := make(chan context.Context, 1)
	q.AsyncContext(ctx, func(context.Context) { ran.Store(true) })
	q.AsyncContext(context.Background(), func(c context.Context) { got <- CurrentContext() })
	cancel()
	g.open()
	testutil.Recv(t, got, "the live AsyncContext block")
	require.False(t, ran.Load())
	require.EqualValues(t, 1, q.Stats().Cancelled)
}

func TestSyncContextThatEndsBeforeItsTurnNeverRuns(t *testing.T) {
	q := NewSerial("s")
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	ctx, cancel := context.WithCancel(context.Background())
	ran := atomic.Bool{}
	errs := make(chan error, 1)
	go func() {
		errs <- q.SyncContext(ctx, func(context.Context) { ran.Store(true) })
	}()
	notYet(t, errs, "SyncContext behind a running block")
	cancel()
	require.ErrorIs(t, testutil.Recv(t, errs, "SyncContext after cancel"), context.Canceled)
	g.open()
	syncDone(t, q)
	require.False(t, ran.Load(), "a cancelled SyncContext ran later")

	done, stop := context.WithCancel(context.Background())
	stop()
	require.ErrorIs(t, q.SyncContext(done, func(context.Context) { ran.Store(true) }), context.Canceled)
	require.False(t, ran.Load())
}

func TestSyncContextGivesTheBlockItsContext(t *testing.T) {
	q := NewSerial("s")
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	var seen, current any
	require.NoError(t, q.SyncContext(ctx, func(c context.Context) {
		seen = c.Value(key{})
		current = CurrentContext().Value(key{})
	}))
	require.Equal(t, "v", seen)
	require.Equal(t, "v", current)
	require.Nil(t, CurrentContext().Value(key{}))
}

func TestCloseRunsEverythingAcceptedAndRefusesTheRest(t *testing.T) {
	q := NewSerial("closing")
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	var n atomic.Int32
	for range 100 {
		q.Async(func() { n.Add(1) })
	}
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	notYet(t, closed, "Close while accepted blocks wait")
	require.Eventually(t, q.Closed, waitTimeout, time.Millisecond)
	require.ErrorIs(t, q.TryAsync(func() {}), ErrClosed)
	require.PanicsWithValue(t, `queue: Async on "closing": queue: closed (submit before Close, or use TryAsync)`,
		func() { q.Async(func() {}) })
	require.Panics(t, func() { q.Sync(func() {}) })
	require.ErrorIs(t, q.SyncContext(context.Background(), func(context.Context) {}), ErrClosed)
	g.open()
	require.NoError(t, testutil.Recv(t, closed, "Close"))
	require.EqualValues(t, 100, n.Load())
	require.NoError(t, q.Close(context.Background()), "a second Close")
}

func TestCloseReturnsWhenItsContextEnds(t *testing.T) {
	q := NewSerial("stuck")
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := q.Close(ctx)
	require.ErrorIs(t, err, context.Canceled)
	g.open()
	require.NoError(t, q.Close(context.Background()))
}

func TestCloseOfASuspendedQueueWaitsForResume(t *testing.T) {
	q := NewSerial("paused")
	q.Suspend()
	ran := make(chan struct{})
	q.Async(func() { close(ran) })
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	notYet(t, closed, "Close of a suspended queue")
	q.Resume()
	testutil.Recv(t, ran, "the accepted block")
	require.NoError(t, testutil.Recv(t, closed, "Close after Resume"))
}

func TestClosingATargetStillRunsItsChildrensBlocks(t *testing.T) {
	parent := NewSerial("parent")
	child := NewSerial("child", WithTarget(parent))
	require.NoError(t, parent.Close(context.Background()))
	ran := make(chan struct{})
	child.Async(func() { close(ran) })
	testutil.Recv(t, ran, "a child's block on a closed target")
	require.ErrorIs(t, parent.TryAsync(func() {}), ErrClosed)
}

func TestAsyncWaitingForRoomWhenCloseIsCalledPanics(t *testing.T) {
	q := NewSerial("bounded", WithLimit(1))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	q.Async(func() {})
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		q.Async(func() {})
	}()
	notYet(t, panicked, "Async waiting for room")
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	p := testutil.Recv(t, panicked, "the waiting Async to panic")
	require.NotNil(t, p)
	g.open()
	require.NoError(t, testutil.Recv(t, closed, "Close"))
}

func TestPanicHandlerGetsAsyncPanicsAndTheQueueGoesOn(t *testing.T) {
	type report struct {
		v     any
		stack []byte
	}
	reports := make(chan report, 1)
	parent := NewConcurrent("parent", WithPanicHandler(func(v any, stack []byte) { reports <- report{v, stack} }))
	q := NewSerial("child", WithTarget(parent)) // inherits the handler
	q.Async(func() { panic("boom") })
	after := make(chan struct{})
	q.Async(func() { close(after) })
	r := testutil.Recv(t, reports, "the panic handler")
	require.Equal(t, "boom", r.v)
	require.Contains(t, string(r.stack), "lifecycle_test.go")
	testutil.Recv(t, after, "the block after a panic")
	syncDone(t, q) // Executed is counted when the drainer's batch ends, after the block returns
	require.EqualValues(t, 2, q.Stats().Executed)
}

func TestSyncPanicReachesTheCallerAndDoesNotWedgeTheQueue(t *testing.T) {
	q := NewSerial("s")
	boom := errors.New("boom")
	require.PanicsWithError(t, "boom", func() { q.Sync(func() { panic(boom) }) })
	ran := false
	q.Sync(func() { ran = true })
	require.True(t, ran)
	c := NewConcurrent("c")
	require.Panics(t, func() { c.BarrierSync(func() { panic("x") }) })
	c.BarrierSync(func() {})
}

func TestStatsCountWhatHappened(t *testing.T) {
	q := NewConcurrent("stats", WithWidth(2), WithQoS(Utility))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	s := q.Stats()
	require.Equal(t, "stats", s.Label)
	require.False(t, s.Serial)
	require.Equal(t, Utility, s.QoS)
	require.Equal(t, 1, s.Running)
	g.open()
	for range 9 {
		q.Async(func() {})
	}
	syncDone(t, q)
	s = q.Stats()
	require.EqualValues(t, 10, s.Executed)
	require.Zero(t, s.Pending)
	require.Zero(t, s.Running)
}

func TestNilFuncPanicsWithAClearMessage(t *testing.T) {
	q := NewSerial("s")
	require.PanicsWithValue(t, `queue: Async on "s" with a nil func`, func() { q.Async(nil) })
	require.Panics(t, func() { q.Sync(nil) })
	require.Panics(t, func() { NewConcurrent("bad", WithWidth(-1)) })
}

func TestSubmitRefusalsOfAClosedQueueAreCountedAndObserved(t *testing.T) {
	r := &recorder{}
	q := NewSerial("bounded", WithLimit(1), WithObserver(r))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	q.Async(func() {}) // q is full

	// ctx ends the wait: nothing accepted, nothing refused.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, q.Submit(ctx, func() {}), context.Canceled)
	require.Zero(t, q.Stats().Rejected, "a Submit whose ctx ended was counted as refused")

	errs := make(chan error, 1)
	go func() { errs <- q.Submit(context.Background(), func() {}) }()
	notYet(t, errs, "Submit on a full queue")
	closed := make(chan error, 1)
	go func() { closed <- q.Close(context.Background()) }()
	require.ErrorIs(t, testutil.Recv(t, errs, "Submit once the queue closed"), ErrClosed)
	require.ErrorIs(t, q.Submit(context.Background(), func() {}), ErrClosed)
	g.open()
	require.NoError(t, testutil.Recv(t, closed, "Close"))
	require.EqualValues(t, 2, q.Stats().Rejected, "the refusals of a closed queue")
	require.Equal(t, 2, strings.Count(strings.Join(r.list(), "\n"), "rejected bounded queue: closed"))
}
