package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

type ctxKey string

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string
	infos  []BlockInfo
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recorder) QueueCreated(q *Queue) { r.add("created %s", q.Label()) }

func (r *recorder) Enqueued(q *Queue, ctx context.Context, k BlockKind) context.Context {
	r.add("enqueued %s %s parent=%v", q.Label(), k, ctx.Value(ctxKey("span")))
	return context.WithValue(ctx, ctxKey("enq"), q.Label())
}

func (r *recorder) Started(q *Queue, ctx context.Context, b BlockInfo) context.Context {
	r.add("started %s %s enq=%v", q.Label(), b.Kind, ctx.Value(ctxKey("enq")))
	return context.WithValue(ctx, ctxKey("span"), "span-"+q.Label())
}

func (r *recorder) Finished(q *Queue, ctx context.Context, b BlockInfo) {
	r.add("finished %s %s span=%v panic=%v", q.Label(), b.Kind, ctx.Value(ctxKey("span")), b.Panic)
	r.mu.Lock()
	r.infos = append(r.infos, b)
	r.mu.Unlock()
}

func (r *recorder) Rejected(q *Queue, err error) { r.add("rejected %s %v", q.Label(), err) }
func (r *recorder) QueueClosed(q *Queue)         { r.add("closed %s", q.Label()) }

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func TestObserverSeesEveryStepOfABlock(t *testing.T) {
	r := &recorder{}
	q := NewSerial("obs", WithObserver(r), WithLimit(1), WithPanicHandler(func(any, []byte) {}))
	child := NewSerial("child", WithTarget(q)) // inherits the observer
	inner := make(chan any, 1)
	q.AsyncContext(context.Background(), func(ctx context.Context) {
		inner <- ctx.Value(ctxKey("span"))
		// An Async made inside an observed block has that block for parent.
		child.Async(func() {})
	})
	require.Equal(t, "span-obs", testutil.Recv(t, inner, "the block's ctx"))
	syncDone(t, q) // the block has submitted to child by now
	syncDone(t, child)
	q.Sync(func() {})
	q.Async(func() { panic("p") })
	syncDone(t, q)
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "blocking block")
	q.Async(func() {})
	require.ErrorIs(t, q.TryAsync(func() {}), ErrFull)
	g.open()
	require.NoError(t, q.Close(context.Background()))

	got := r.list()
	require.Equal(t, []string{
		"created obs",
		"created child",
		"enqueued obs async parent=<nil>",
		"started obs async enq=obs",
		"enqueued child async parent=span-obs",
		"finished obs async span=span-obs panic=<nil>",
	}, got[:6])
	require.Contains(t, got, "started child async enq=child")
	require.Contains(t, got, "finished child async span=span-child panic=<nil>")
	require.Contains(t, got, "finished obs sync span=span-obs panic=<nil>")
	require.Contains(t, got, "finished child sync span=span-child panic=<nil>")
	require.Contains(t, got, "finished obs async span=span-obs panic=p")
	require.Contains(t, got, "rejected obs queue: full")
	require.Contains(t, got, "closed obs") // told when Close is called, not when it returns
	for _, b := range r.infos {
		require.False(t, b.Enqueued.IsZero())
		require.GreaterOrEqual(t, b.Wait, time.Duration(0))
		require.GreaterOrEqual(t, b.Run, time.Duration(0))
	}
}

// inertRecorder is a recorder that may say it is inert.
type inertRecorder struct {
	recorder
	inert bool
}

func (r *inertRecorder) Inert() bool { return r.inert }

// An observer that reports itself inert when a queue is made is skipped by that queue and
// the queues that target it; one that does not is told everything.
func TestInertObserverIsSkipped(t *testing.T) {
	off := &inertRecorder{inert: true}
	parent := NewConcurrent("parent", WithObserver(off))
	child := NewSerial("child", WithTarget(parent))
	child.Sync(func() {})
	require.NoError(t, child.TryAsync(func() {}))
	child.Sync(func() {})
	require.NoError(t, child.Close(context.Background()))
	require.NoError(t, parent.Close(context.Background()))
	require.Empty(t, off.list())

	on := &inertRecorder{inert: false}
	q := NewSerial("q", WithObserver(on))
	q.Sync(func() {})
	require.NoError(t, q.Close(context.Background()))
	require.Equal(t, []string{
		"created q",
		"enqueued q sync parent=<nil>",
		"started q sync enq=q",
		"finished q sync span=span-q panic=<nil>",
		"closed q",
	}, on.list())
}

// Sync, BarrierSync and Guarded.Sync made inside a block run under that block's context, as
// an Async does: an Observer sees the block as their parent, so a trace does not break at a
// Sync.
func TestSyncCarriesTheCallersContext(t *testing.T) {
	r := &recorder{}
	outer := NewSerial("outer", WithObserver(r))
	ser := NewSerial("ser", WithObserver(r))
	con := NewConcurrent("con", WithObserver(r))
	g := NewGuarded(0, WithLabel("guarded"), WithObserver(r))
	seen := make(chan any, 3)
	outer.AsyncContext(context.Background(), func(context.Context) {
		ser.Sync(func() { seen <- CurrentContext().Value(ctxKey("span")) })
		con.BarrierSync(func() {})
		g.Sync(func(*int) {})
	})
	require.Equal(t, "span-ser", testutil.Recv(t, seen, "the Sync block"), "the Sync's own span is current inside it")
	syncDone(t, outer)
	var got []string
	for _, e := range r.list() {
		if strings.HasPrefix(e, "enqueued ") && !strings.HasPrefix(e, "enqueued outer") {
			got = append(got, e)
		}
	}
	require.Equal(t, []string{
		"enqueued ser sync parent=span-outer",
		"enqueued con sync parent=span-outer",
		"enqueued guarded sync parent=span-outer",
	}, got)
}

// A block the queue refuses was never sent: the observer hears of its refusal, never of its
// enqueue.
func TestObserverIsToldOnlyOfAcceptedBlocks(t *testing.T) {
	r := &recorder{}
	q := NewSerial("refusing", WithObserver(r), WithLimit(1))
	g := newGate()
	q.Async(g.block)
	testutil.Recv(t, g.started, "the running block")
	q.Async(func() {}) // fills the queue
	require.ErrorIs(t, q.TryAsync(func() {}), ErrFull)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.AsyncContext(ctx, func(context.Context) {}) // gives up waiting for room
	require.ErrorIs(t, q.Submit(ctx, func() {}), context.Canceled)
	g.open()
	require.NoError(t, q.Close(context.Background()))
	require.ErrorIs(t, q.TryAsync(func() {}), ErrClosed)
	require.ErrorIs(t, q.Submit(context.Background(), func() {}), ErrClosed)
	require.Panics(t, func() { q.Async(func() {}) })
	require.ErrorIs(t, q.SyncContext(context.Background(), func(context.Context) {}), ErrClosed)

	enqueued := 0
	for _, e := range r.list() {
		if strings.HasPrefix(e, "enqueued ") {
			enqueued++
		}
	}
	require.Equal(t, 2, enqueued, "the observer was told of refused blocks: %q", r.list())
	require.Contains(t, r.list(), "rejected refusing queue: full")
	require.Contains(t, r.list(), "rejected refusing queue: closed")
}

// WithKey tells a queue from the others of its label, in Stats and to an Observer; queues
// that target it do not inherit it.
func TestQueueKey(t *testing.T) {
	r := &recorder{}
	q := NewSerial("ws.conn", WithKey("17"), WithObserver(r))
	child := NewSerial("child", WithTarget(q))
	plain := NewSerial("ws.conn", WithKey(""))
	require.Equal(t, "17", q.Key())
	require.Equal(t, "17", q.Stats().Key)
	require.Equal(t, "", child.Key())
	require.Equal(t, "", plain.Key())
	require.Equal(t, "ws.conn", q.Label())
}
