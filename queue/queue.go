package queue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dispatchkit/dispatchkit/internal/goid"
)

type kind uint8

const (
	serialKind kind = iota
	concurrentKind
	rootKind
)

// batchSize is how many blocks a drainer runs before it yields its target to the queues
// beside it (fairness); it is also the serial drainer's batch, taken under one lock.
const batchSize = 32

// flags read without the lock by drainers between blocks and by finishing blocks.
const (
	flagStopped uint32 = 1 << iota // suspended or inactive
	flagClosed
	flagAsyncBoost // Async blocks of the queue raised its chain (override.go)
	flagChildBoost // drains of the queue raised its target's chain (override.go)
)

// A serial queue's hold word says who holds the queue, so that a Sync caller can take an idle
// queue and give it back, and an Async can hand an idle queue its block, with one atomic
// operation each, without the lock. Everything else changes it under q.mu, with atomic
// operations because those do not take the lock. The only changes made without the lock are
// a CAS from an idle word (the queue idle, runnable and open: nothing in it but the lone
// count, idleWord) by a Sync caller or a submitter, a Sync caller's CAS from exactly its own
// word back to that count, and a drainer's CAS from exactly holdBusy|holdFirst and the count
// (the submitter's word: one block, in the batch or travelling with the drain, nothing
// queued since) to its lone word and back to the count plus one (drainSerial).
const (
	holdBusy    uint64 = 1 << iota // held, or a drainer is scheduled (a serial queue's active)
	holdStopped                    // suspended or inactive: flagStopped's copy, under q.mu
	holdClosed                     // closed: flagClosed's copy, so that a CAS from 0 fails
	holdFast                       // held by a Sync caller that took it without the lock ...
	holdQueued                     // ... (or holdFirst is set) and something was queued since: its release locks
	holdFirst                      // a submitter put a block in the batch, or handed it with the drain, without the lock
	holdLone                       // held by a drainer running that block alone, without the lock (drainSerial)
	holdHungry                     // the drainer sleeps until a batch waits (sleepForBatch)
	holdShift   = 16               // the fast Sync caller's or lone drainer's goroutine, above the bits and the count
)

// The hold word's bits 8-15 count the blocks run in lone episodes (drainSerial), in neither acc
// nor done: the lone drainer counts its block with the CAS that gives the queue back, and
// folds the count into acc and done under the lock when it is full or the CAS fails. The
// count is part of an idle queue's word: "idle, runnable and open" is a word with nothing
// but the count (idleWord), and whoever takes the queue keeps the count in its word.
const (
	holdCountShift        = 8
	holdCountOne   uint64 = 1 << holdCountShift
	holdCount      uint64 = (1<<(holdShift-holdCountShift) - 1) << holdCountShift
	holdBits       uint64 = holdCountOne - 1 // the flags
)

// loneCount is the lone count in hold word h.
func loneCount(h uint64) uint64 { return (h & holdCount) >> holdCountShift }

// idleWord reports whether hold word h is an idle, runnable and open serial queue's.
func idleWord(h uint64) bool { return h&^holdCount == 0 }

// takeIdle takes an idle, runnable and open serial queue with one CAS, its word becoming mine
// with the lone count kept; it reports whether it did.
func (q *Queue) takeIdle(mine uint64) bool {
	h := q.hold.Load()
	return idleWord(h) && q.hold.CompareAndSwap(h, h|mine)
}

// takeIdleSync is takeIdle for a Sync caller: it tries the word of a queue that never had a
// lone episode (0) first, with no load before the CAS. A queue locked and unlocked by Syncs
// alone keeps a 0 word, and under contention a load before the CAS would fetch the line
// shared just before the CAS needs it exclusive (LockQueueSync +11-19% on the quiet machine).
func (q *Queue) takeIdleSync(mine uint64) bool {
	return q.hold.CompareAndSwap(0, mine) || q.takeIdle(mine)
}

// config holds what most queues do not set, so that a queue without it pays one nil check.
type config struct {
	panics func(recovered any, stack []byte)
	obs    Observer
}

// extra holds state that only some queues ever need, allocated on first use under mu.
type extra struct {
	holders    []uintptr     // concurrent: goroutines running a block of the queue
	roomWait   chan struct{} // closed when a limited queue gets room (or closes)
	closeDone  chan struct{} // closed when a closed queue has run every accepted block
	closeFired bool
	rejected   uint64
	cancelled  uint64
	specific   map[any]any   // SetSpecific's values, keyed by *Key[T]
	wake       chan struct{} // serial, flooded: wakes the drainer that sleeps for a batch (sleepForBatch), made by that drain
}

// A Queue runs blocks (funcs): a serial queue one at a time in FIFO order, a concurrent queue
// up to its width at once, started in FIFO order. Queues are cheap: an idle queue holds no
// goroutine, only a few words of memory; goroutines come from a shared executor while a queue
// has work. Create queues with NewSerial and NewConcurrent, or use the Global roots.
type Queue struct {
	// A Queue is 240 bytes, which the allocator places at any multiple of 16: which of its
	// bytes share a 64-byte cache line depends on where it landed. So the fields fall in
	// three parts, with at least 64 bytes between what submitters touch on every Async and
	// what a serial queue's drainer touches for every block, whatever the placement (with
	// the layout before, a queue 16 or 32 bytes past a line ran SerialAsync at up to 2.8x
	// and 1.7x the CPU of one that landed on a line):
	//
	//   - the submitters' part: the lock, the hold word, the pending list and what Async
	//     reads (target, kind, plain);
	//   - fields that neither side touches per block or per Async (set at creation, used by
	//     other kinds of queue, or once per drain);
	//   - the drainer's part: the flags it checks between blocks, what runBlock reads, its
	//     batch and the finished count.
	//
	// TestSubmittersAndTheDrainerWriteSeparateCacheLines checks the distances.

	// The submitters' part.
	mu    sync.Mutex
	items deque // accepted blocks not yet taken by a drainer
	// acc counts blocks accepted directly (not drains of queues targeting this one), under mu
	// (exec.mu for a root); done counts those finished, written by drainers a batch at a time.
	// Keeping acc under the lock submitters hold anyway spares them an atomic operation.
	acc    uint64
	target atomic.Pointer[Queue] // written by SetTarget while others may read it
	// Serial queues: see holdBusy (their active stays 0). Every submission reads it, before
	// and under the lock: it sits at least 64 bytes from mu, so that the read does not
	// fetch the lock's line shared just before the Lock's CAS needs it exclusive (two
	// coherence transactions instead of one, on a lock other submitters contend for).
	hold  atomic.Uint64
	kind  kind
	plain bool // serial, no limit, observer, panic handler or call sites: Async's short path

	// Neither side's per block or per Async.
	qosSet bool // WithQoS gave the class; else it follows the target (SetTarget too)
	// For a queue that targets a root, guarded by exec.mu: the QoS its waiting drain was
	// queued at (-1: none waiting), and the QoS a waiter raised it to (override).
	slot     int8
	override int8
	debug    debugFlags   // profiler labels off, call sites on
	lslot    uint16       // the queue's slot in the profiler-label cache (labelSlot)
	qos      atomic.Int32 // QoS; written by SetTarget while others may read it
	width    int32        // own width; 0 means not limited by itself
	label    string
	ext      *extra
	pending  atomic.Int64 // limited queues only: accepted and not started
	waiters  atomic.Int32 // limited queues only: Async calls waiting for room
	active   int32        // concurrent queues: drainers scheduled or running, plus Sync callers holding a slot
	inflight int32        // concurrent: blocks running now, Sync callers included
	suspend  int32
	inactive bool
	closed   bool
	excl     bool // concurrent: a barrier holds the queue
	counted  bool // serial: the block holdFirst says of is counted in acc (by its drainer)

	// The drainer's part.
	flags atomic.Uint32 // read without the lock by drainers between blocks and by finishing blocks
	limit int32
	_     uint32
	cfg   *config
	batch deque // serial: blocks the drainer took; only the queue's holder touches it
	done  atomic.Uint64
	owner uintptr // goroutine running the queue alone: serial drainer, Sync caller, barrier (ownerLocked)

	key *string // WithKey; nil for most queues, which a label identifies well enough
}

// live is the number of accepted blocks that have not finished; q.mu must be held. The
// blocks of lone episodes, in both accepted and executed, are left out of both.
func (q *Queue) live() uint64 { return q.acc + q.first() - q.done.Load() }

// accepted is the number of blocks the queue accepted, the one a submitter handed an idle
// queue without the lock included, before its drainer counts it in acc; q.mu must be held.
// A lone drainer's block is left out until it is counted in the lone count, not counted
// twice meanwhile: an override's end (over) can come early, never late.
func (q *Queue) accepted() uint64 {
	h := q.hold.Load()
	n := q.acc + loneCount(h)
	if h&holdLone == 0 {
		n += q.first()
	}
	return n
}

// executed is the number of accepted blocks that finished.
func (q *Queue) executed() uint64 { return q.done.Load() + loneCount(q.hold.Load()) }

// first is 1 while a block handed to the idle queue without the lock is counted nowhere else.
func (q *Queue) first() uint64 {
	if !q.counted && q.hold.Load()&holdFirst != 0 {
		return 1
	}
	return 0
}

// countFirstLocked is called by a serial queue's drainer as it starts: it counts in acc the
// block that a submitter put in its batch without the lock.
func (q *Queue) countFirstLocked() {
	if !q.counted && q.hold.Load()&holdFirst != 0 {
		q.acc++
		q.counted = true
	}
}

// NewSerial returns a serial queue: its blocks run one at a time, in the order they were
// submitted, each seeing the effects of the ones before it.
func NewSerial(label string, opts ...Option) *Queue {
	return newQueue(serialKind, label, opts)
}

// NewConcurrent returns a concurrent queue: its blocks start in submission order and run up
// to the queue's width at once (WithWidth; by default only its target chain limits it).
func NewConcurrent(label string, opts ...Option) *Queue {
	return newQueue(concurrentKind, label, opts)
}

func newQueue(k kind, label string, opts []Option) *Queue {
	s := settings{label: label, qos: Default}
	for _, o := range opts {
		o(&s)
	}
	if !s.qos.valid() {
		panic(fmt.Sprintf("queue: invalid QoS %d for %q", int(s.qos), s.label))
	}
	if s.width < 0 {
		panic(fmt.Sprintf("queue: WithWidth(%d) for %q: the width must be at least 1", s.width, s.label))
	}
	q := &Queue{label: s.label, key: s.key, kind: k, qosSet: s.qosSet, limit: clamp32(s.limit), slot: -1, lslot: labelSlot(s.label)}
	q.qos.Store(int32(s.qos))
	t := s.target
	if t == nil {
		t = Global(s.qos)
	} else if !s.qosSet {
		q.qos.Store(int32(t.QoS()))
	}
	q.target.Store(t)
	q.debug = t.debug&^s.debugSet | s.debug&s.debugSet
	if k == serialKind {
		q.width = 1
	} else {
		q.width = clamp32(s.width)
	}
	// Inherit what the target has unless this queue sets its own.
	var inherited config
	if t.cfg != nil {
		inherited = *t.cfg
	}
	if s.panics != nil {
		inherited.panics = s.panics
	}
	if s.obs != nil {
		inherited.obs = s.obs
		if in, ok := s.obs.(Inert); ok && in.Inert() {
			inherited.obs = nil // observed by nobody: cost nothing
		}
	}
	if inherited.panics != nil || inherited.obs != nil {
		q.cfg = &inherited
	}
	q.plain = k == serialKind && q.limit == 0 && q.cfg == nil && q.debug&recordCallSites == 0
	if s.inactive {
		q.inactive = true
		q.flags.Store(flagStopped)
		if k == serialKind {
			q.hold.Store(holdStopped)
		}
	}
	if q.cfg != nil && q.cfg.obs != nil {
		q.cfg.obs.QueueCreated(q)
	}
	return q
}

func clamp32(n int) int32 {
	if n <= 0 {
		return 0
	}
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n)
}

// Label returns the label the queue was created with.
func (q *Queue) Label() string { return q.label }

// Key returns the queue's key (WithKey), "" if it has none.
func (q *Queue) Key() string {
	if q.key == nil {
		return ""
	}
	return *q.key
}

// Target returns the queue this one runs its blocks on; nil for the Global roots.
func (q *Queue) Target() *Queue {
	if q.kind == rootKind {
		return nil
	}
	return q.target.Load()
}

// QoS returns the queue's quality-of-service class.
func (q *Queue) QoS() QoS { return QoS(q.qos.Load()) }

// IsSerial reports whether the queue runs one block at a time.
func (q *Queue) IsSerial() bool { return q.kind == serialKind }

// Width returns how many blocks of the queue can run at once: the smallest width along its
// target chain, where a serial queue counts 1 and a Global root the current GOMAXPROCS.
func (q *Queue) Width() int {
	exec.refreshProcs()
	return int(q.effWidth())
}

func (q *Queue) effWidth() int32 {
	w := int32(math.MaxInt32)
	for x := q; x != nil; x = x.target.Load() {
		switch x.kind {
		case serialKind:
			return 1
		case rootKind:
			return min(w, exec.procs())
		}
		if x.width > 0 {
			w = min(w, x.width)
		}
	}
	return w
}

// Closed reports whether Close was called.
func (q *Queue) Closed() bool { return q.flags.Load()&flagClosed != 0 }

func (q *Queue) extLocked() *extra {
	if q.ext == nil {
		q.ext = &extra{}
	}
	return q.ext
}

func (q *Queue) runnableLocked() bool { return q.suspend == 0 && !q.inactive }

// ownerLocked is the goroutine that runs q alone: its drainer, a barrier, or a Sync caller,
// including one that took the queue without the lock.
func (q *Queue) ownerLocked() uintptr {
	if h := q.hold.Load(); h&(holdFast|holdLone) != 0 {
		return uintptr(h >> holdShift)
	}
	return q.owner
}

// busyLocked reports whether a serial queue is held or has a drainer scheduled or running.
func (q *Queue) busyLocked() bool { return q.hold.Load()&holdBusy != 0 }

// serialWakeLocked is called for a serial queue that has pending blocks: it marks an idle
// runnable queue busy and reports that the caller must start its drainer; if a Sync caller
// holds the queue without the lock, or a drainer may (a block handed to the idle queue
// without the lock, holdFirst), it marks that blocks wait, so that its release looks.
func (q *Queue) serialWakeLocked() bool {
	for {
		h := q.hold.Load()
		switch {
		case h&(holdBusy|holdStopped) == 0:
			if q.hold.CompareAndSwap(h, h|holdBusy) {
				return true
			}
		case h&holdQueued == 0 && h&(holdFast|holdFirst) != 0:
			if q.hold.CompareAndSwap(h, h|holdQueued) {
				return false
			}
		default:
			return false
		}
	}
}

// serialReleaseLocked gives back a serial queue held by the caller (its drainer, or a Sync
// caller under the lock): idle, or, if blocks wait and it may run, still busy for a new
// drainer that the caller must start (it reports so). There is no moment between the two
// at which an uncontended Sync could take the queue ahead of the waiting blocks.
func (q *Queue) serialReleaseLocked() bool {
	q.owner = 0
	if q.items.n > 0 && q.runnableLocked() {
		return true
	}
	q.counted = false
	q.hold.And(^(holdBusy | holdFirst | holdQueued | holdHungry))
	return false
}

// setStoppedLocked keeps a serial queue's copy of flagStopped; when the queue may run again
// and blocks wait, it marks it busy in the same step and reports that a drainer must start.
func (q *Queue) setStoppedLocked(stopped bool) bool {
	if q.kind != serialKind {
		return false
	}
	for {
		h := q.hold.Load()
		nh, start := h|holdStopped, false
		if !stopped {
			nh = h &^ holdStopped
			if h&holdBusy == 0 && q.items.n > 0 {
				nh, start = nh|holdBusy, true
			}
		}
		if q.hold.CompareAndSwap(h, nh) {
			return start
		}
	}
}

// wakeLocked says how many new drainers the queue needs now and counts them as active; the
// caller starts them after unlocking.
func (q *Queue) wakeLocked() int32 {
	if q.kind == serialKind {
		if h := q.hold.Load(); h&holdHungry != 0 {
			q.wakeDrainerLocked(h, 1) // a Sync caller, a child's drain, a block of the slow path
		}
		if q.items.n > 0 && q.serialWakeLocked() {
			return 1
		}
		return 0
	}
	n := q.wantLocked()
	q.active += n
	return n
}

func (q *Queue) String() string { return fmt.Sprintf("queue %q", q.label) }

// Async submits fn to run on the queue and returns at once. On a queue made WithLimit it
// waits while the queue is full, unless the room would come only after the caller's own block
// (see WithLimit). It panics if the queue is closed, like a send on a closed
// channel: closing is the owner's decision, and work submitted after it is a bug.
func (q *Queue) Async(fn func()) {
	if fn == nil {
		nilFunc("Async", q.label)
	}
	if q.plain && q.submitPlain(item{fn: fn}) {
		return
	}
	if err := q.submit(context.Background(), item{fn: fn}, BlockAsync, waitForRoom); err != nil {
		panic(fmt.Sprintf("queue: Async on %q: %v (submit before Close, or use TryAsync)", q.label, err))
	}
}

// AsyncContext submits fn to run on the queue with ctx. If ctx has ended by the time fn would
// start, fn is skipped (and counted in Stats.Cancelled). ctx also carries tracing across the
// hop: an Observer sees it at enqueue. On a full limited queue it waits for room or for ctx.
func (q *Queue) AsyncContext(ctx context.Context, fn func(context.Context)) {
	if fn == nil {
		nilFunc("AsyncContext", q.label)
	}
	err := q.submit(ctx, item{x: &ext{kind: BlockAsync, ctx: ctx, cfn: fn}}, BlockAsync, waitForRoom)
	switch {
	case err == nil:
	case errors.Is(err, ErrClosed):
		panic(fmt.Sprintf("queue: AsyncContext on %q: %v (submit before Close, or use TryAsync)", q.label, err))
	default: // ctx ended while waiting for room: the block was never accepted
		q.countCancelled()
	}
}

// TryAsync submits fn without waiting: it returns ErrFull if the queue is at its limit and
// ErrClosed if it is closed.
func (q *Queue) TryAsync(fn func()) error {
	if fn == nil {
		nilFunc("TryAsync", q.label)
	}
	return q.submit(context.Background(), item{fn: fn}, BlockAsync, failWhenFull)
}

// Submit is Async for code that submits on behalf of others (a timer, an event source, a
// notification): it never panics. It returns nil once fn is accepted, ErrClosed if the queue
// is closed (before or while Submit waits for room), or ctx's error if ctx ends while a full
// limited queue makes Submit wait. A block that was refused never runs. A refusal because the
// queue is closed is counted in Stats.Rejected and told to the Observer's Rejected, as
// TryAsync's are: the caller goes quiet, the queue's owner can still see what was dropped.
func (q *Queue) Submit(ctx context.Context, fn func()) error {
	if fn == nil {
		nilFunc("Submit", q.label)
	}
	return q.submit(ctx, item{fn: fn}, BlockAsync, waitOrRefuse)
}

// BarrierAsync submits fn as a barrier: on a concurrent queue it starts once every block
// submitted before it has finished, runs alone, and the blocks after it wait for it. On a
// serial queue it is an ordinary block; on a Global root it is an ordinary Async, as in GCD.
func (q *Queue) BarrierAsync(fn func()) {
	if fn == nil {
		nilFunc("BarrierAsync", q.label)
	}
	it := item{fn: fn}
	if q.kind == concurrentKind {
		it = item{x: &ext{kind: BlockBarrier, fn: fn}}
	}
	if err := q.submit(context.Background(), it, BlockBarrier, waitForRoom); err != nil {
		panic(fmt.Sprintf("queue: BarrierAsync on %q: %v", q.label, err))
	}
}

func nilFunc(what, label string) {
	panic(fmt.Sprintf("queue: %s on %q with a nil func", what, label))
}

type submitMode uint8

const (
	waitForRoom  submitMode = iota // Async: a closed queue is the caller's bug
	failWhenFull                   // TryAsync: refusals are counted
	waitOrRefuse                   // Submit: waits for room; a closed queue is counted
)

func (q *Queue) submit(ctx context.Context, it item, k BlockKind, mode submitMode) error {
	if q.plain && q.submitPlain(it) { // Guarded.Async, TryAsync, Submit, AsyncContext
		return nil
	}
	if q.debug&recordCallSites != 0 {
		if it.x == nil {
			it = item{x: &ext{fn: it.fn, kind: k}}
		}
		it.x.site = callSite(2)
	}
	observed := observing && q.cfg != nil && q.cfg.obs != nil
	if q.kind == rootKind {
		if observed {
			it = q.observeEnqueue(it, k)
		}
		exec.push(q, it)
		return nil
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return q.reject(ErrClosed, mode)
	}
	if q.limit > 0 && q.pending.Load() >= int64(q.limit) {
		switch {
		case mode == failWhenFull:
			q.mu.Unlock()
			return q.reject(ErrFull, mode)
		case q.roomNeedsCallerLocked(goid.G()):
			// The room would come only after the caller's own block: waiting would hang.
			// The queue's own blocks (and those that hold what it needs) get in over the limit.
		default:
			if err := q.waitRoomLocked(ctx); err != nil {
				q.mu.Unlock()
				if err == ErrClosed {
					return q.reject(err, mode)
				}
				return err
			}
		}
	}
	q.acc++
	if q.limit > 0 {
		q.pending.Add(1)
	}
	if observed {
		// The observer hears only of blocks the queue accepted, and not under the lock (its
		// hook may take locks of its own). The block is counted meanwhile: Close waits for
		// it and the limit sees it.
		q.mu.Unlock()
		it = q.observeEnqueue(it, k)
		q.mu.Lock()
	}
	q.items.pushBack(it)
	n := q.wakeLocked()
	q.mu.Unlock()
	q.startDrainers(n)
	q.inheritQoS() // override.go
	return nil
}

// submitPlain is submit for a plain serial queue (most queues): the lock, the block pushed and
// the drainer started if the queue was idle, without the checks that only other queues need.
// holdClosed and holdStopped, read under q.mu, say what closed and runnableLocked say (the
// hold word is on the submitters' cache line, the flags on the drainer's). It
// returns false, having done nothing, if the queue is closed: submit's slow path reports
// that as its mode says.
func (q *Queue) submitPlain(it item) bool {
	if q.takeIdle(holdBusy | holdFirst) {
		// The queue was idle, runnable and open, and is the caller's until the drainer it
		// starts runs: the block goes with the drain into the caller's worker's ring, or else
		// in the drainer's batch (its inline slot), with no lock. The drainer counts it in acc
		// (accepted counts it meanwhile).
		if t := q.target.Load(); it.x != nil || t.kind != rootKind || !exec.handFirst(t, q, it.fn) {
			q.batch.pushBack(it)
			t.submitChild(q)
		}
		q.inheritQoS() // override.go
		return true
	}
	q.mu.Lock()
	h := q.hold.Load() // holdClosed is flagClosed's copy, also changed under q.mu
	if h&holdClosed != 0 {
		q.mu.Unlock()
		return false
	}
	q.acc++
	if it.x != nil || !q.items.tryPushFunc(it.fn) {
		q.items.pushBack(it)
	}
	if h&holdHungry != 0 {
		q.wakeDrainerLocked(h, floodBatch)
	}
	start := q.serialWakeLocked()
	q.mu.Unlock()
	if start {
		q.target.Load().submitChild(q)
	}
	q.inheritQoS() // override.go
	return true
}

func (q *Queue) reject(err error, mode submitMode) error {
	if mode != waitForRoom {
		q.mu.Lock()
		q.extLocked().rejected++
		q.mu.Unlock()
		if q.cfg != nil && q.cfg.obs != nil {
			q.cfg.obs.Rejected(q, err)
		}
	}
	return err
}

// waitRoomLocked waits, with q.mu held on entry and exit, until a limited queue has room, it
// closes (ErrClosed) or ctx ends.
func (q *Queue) waitRoomLocked(ctx context.Context) error {
	done := ctx.Done()
	for q.pending.Load() >= int64(q.limit) {
		if q.closed {
			return ErrClosed
		}
		x := q.extLocked()
		if x.roomWait == nil {
			x.roomWait = make(chan struct{})
		}
		ch := x.roomWait
		q.waiters.Add(1)
		if q.pending.Load() < int64(q.limit) {
			// A block started between the check above and the count: its started() counts
			// pending down and then reads waiters, we count waiters up and then read pending,
			// so one of us sees the other. Without this look, a drainer that had the last
			// pending blocks in its batch could start them all unseen, and we would wait for
			// a room that nobody announces.
			q.waiters.Add(-1)
			continue
		}
		q.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-done:
			err = ctx.Err()
		}
		q.waiters.Add(-1)
		q.mu.Lock()
		if err != nil {
			return err
		}
	}
	if q.closed {
		return ErrClosed
	}
	return nil
}

// wakeRoomLocked releases every Async waiting for room; they check again.
func (q *Queue) wakeRoomLocked() {
	if q.ext != nil && q.ext.roomWait != nil {
		close(q.ext.roomWait)
		q.ext.roomWait = nil
	}
}

// wantLocked says how many new drainers the queue needs now; the caller adds them to active
// and starts them after unlocking.
func (q *Queue) wantLocked() int32 {
	if q.items.n == 0 || !q.runnableLocked() {
		return 0
	}
	if q.kind == serialKind {
		if !q.busyLocked() {
			return 1
		}
		return 0
	}
	if q.excl {
		return 0
	}
	if q.items.peek().exclusive() {
		if q.active == 0 && q.inflight == 0 {
			return 1
		}
		return 0
	}
	free := q.effWidth() - q.active
	if free <= 0 {
		return 0
	}
	return min(free, q.items.n)
}

func (q *Queue) startDrainers(n int32) {
	for ; n > 0; n-- {
		q.target.Load().submitChild(q)
	}
}

// submitChild queues a drain of child on q: the child's blocks run as one block of q.
// A closed queue still takes them: closing refuses only blocks submitted to it directly.
func (q *Queue) submitChild(child *Queue) {
	it := item{child: child}
	if q.kind == rootKind {
		exec.push(q, it)
		return
	}
	if child.QoS() > q.QoS() {
		q.inheritChildQoS(child) // override.go; before the drain can start and end it
	}
	q.mu.Lock()
	q.items.pushBack(it)
	n := q.wakeLocked()
	q.mu.Unlock()
	q.startDrainers(n)
}

// Suspend stops the queue's blocks from starting until a matching Resume; a running block
// finishes. Suspensions count: n Suspends need n Resumes. Suspend of a Global root does
// nothing, as in GCD.
func (q *Queue) Suspend() {
	if q.kind == rootKind {
		return
	}
	q.mu.Lock()
	q.suspend++
	q.flags.Or(flagStopped)
	q.setStoppedLocked(true)
	q.mu.Unlock()
}

// Resume undoes one Suspend. It panics if the queue is not suspended (an Inactive queue is
// started with Activate, not Resume), as GCD does: an unbalanced Resume is a bug.
func (q *Queue) Resume() {
	if q.kind == rootKind {
		return
	}
	q.mu.Lock()
	if q.suspend == 0 {
		q.mu.Unlock()
		panic(fmt.Sprintf("queue: Resume of %q, which is not suspended (unbalanced Resume; use Activate for an Inactive queue)", q.label))
	}
	q.suspend--
	q.restartLocked()
}

// Activate starts a queue created Inactive. Activating an active queue does nothing.
func (q *Queue) Activate() {
	if q.kind == rootKind {
		return
	}
	q.mu.Lock()
	q.inactive = false
	q.restartLocked()
}

// restartLocked clears the stopped flag if the queue may run again, starts drainers, and
// unlocks.
func (q *Queue) restartLocked() {
	var n int32
	if q.runnableLocked() {
		q.flags.And(^flagStopped)
		if q.setStoppedLocked(false) {
			n = 1
		}
	}
	if q.kind != serialKind {
		n = q.wakeLocked()
	}
	q.mu.Unlock()
	q.startDrainers(n)
}

var errCloseGlobal = errors.New("queue: a Global queue cannot be closed")

// Close refuses new blocks (Async panics, TryAsync returns ErrClosed), lets every accepted
// block run, and returns when they have, or with ctx's error when ctx ends first (the blocks
// still run). Blocks of queues targeting this one still run on it. Close of a suspended queue
// waits for Resume. Calling Close again waits again.
func (q *Queue) Close(ctx context.Context) error {
	if q.kind == rootKind {
		return errCloseGlobal
	}
	q.mu.Lock()
	first := !q.closed
	q.closed = true
	q.flags.Or(flagClosed)
	if q.kind == serialKind {
		q.hold.Or(holdClosed)
	}
	x := q.extLocked()
	if x.closeDone == nil {
		x.closeDone = make(chan struct{})
	}
	if q.live() == 0 {
		q.fireCloseLocked()
	}
	q.wakeRoomLocked()
	done := x.closeDone
	q.mu.Unlock()
	if first && q.cfg != nil && q.cfg.obs != nil {
		q.cfg.obs.QueueClosed(q)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue: Close of %q: %w", q.label, ctx.Err())
	}
}

func (q *Queue) fireCloseLocked() {
	if x := q.ext; x != nil && x.closeDone != nil && !x.closeFired {
		x.closeFired = true
		close(x.closeDone)
	}
}

// finished does the accounting of n blocks that returned (or panicked into a handler).
func (q *Queue) finished(n uint64) {
	q.done.Add(n)
	f := q.flags.Load() // after the count: see executor.raise
	if f&flagClosed != 0 {
		q.mu.Lock()
		if q.live() == 0 {
			q.fireCloseLocked()
		}
		q.mu.Unlock()
	}
	if f&flagAsyncBoost != 0 {
		exec.asyncProgress(q)
	}
}

// started does the accounting of a limited queue's block that is about to run.
func (q *Queue) started() {
	q.pending.Add(-1)
	if q.waiters.Load() > 0 {
		q.mu.Lock()
		q.wakeRoomLocked()
		q.mu.Unlock()
	}
}

func (q *Queue) countCancelled() {
	q.mu.Lock()
	q.extLocked().cancelled++
	q.mu.Unlock()
}

// Stats is a snapshot of a queue's state and counters.
type Stats struct {
	Label     string
	Key       string // WithKey's, "" without one
	Serial    bool
	Global    bool
	Width     int // as Width()
	QoS       QoS
	Pending   int    // accepted, not started
	Running   int    // running now (Sync callers included)
	Executed  uint64 // Async and barrier blocks finished (returned or panicked); a Sync is not counted
	Rejected  uint64 // TryAsync refusals, and Submit's for a closed queue
	Cancelled uint64 // AsyncContext blocks skipped because their ctx ended
	Suspended bool
	Inactive  bool
	Closed    bool
}

// Stats returns a snapshot of the queue's counters. It takes the queue's lock briefly.
func (q *Queue) Stats() Stats {
	s := Stats{Label: q.label, Key: q.Key(), Serial: q.kind == serialKind, Width: q.Width(), QoS: q.QoS()}
	if q.kind == rootKind {
		s.Global = true
		s.Pending, s.Running = exec.rootLoad(q)
		s.Executed = q.done.Load()
		return s
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	live := q.live()
	s.Executed = q.executed()
	switch {
	case q.kind == concurrentKind:
		s.Running = int(q.inflight)
	case q.ownerLocked() != 0:
		s.Running = 1
	}
	if q.limit > 0 {
		s.Pending = int(q.pending.Load())
	} else {
		s.Pending = max(int(live)-s.Running, 0)
	}
	if q.ext != nil {
		s.Rejected, s.Cancelled = q.ext.rejected, q.ext.cancelled
	}
	s.Suspended, s.Inactive, s.Closed = q.suspend > 0, q.inactive, q.closed
	return s
}

// now is the clock for observers, a variable so that tests can see its use.
var now = time.Now
