package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzQueueModel plays random sequences of operations on a small hierarchy of queues and checks
// them against a simple model:
//
//	q0 serial (on Global), q1 and q2 serial targeting q0 (q2 WithLimit(fuzzLimit)),
//	q3 concurrent of width 2 (on Global), q4 serial targeting q3.
//
// The rules checked: blocks of q0, q1 and q2 never overlap (one serial target), nor do two of
// q4's; each serial queue runs its blocks in submission order; no more than 2 blocks run on q3
// at once (its own and q4's); a barrier of q3 runs alone, after every block submitted to q3
// before it and before every block submitted after it; every accepted block runs exactly once,
// and by the time Close of its queue returns; a refused or cancelled block never runs; a closed
// queue refuses (TryAsync and SyncContext say ErrClosed, Async panics); TryAsync on the limited
// q2 says ErrFull only when it is full, and surely when it is suspended with a full backlog;
// a Sync onto a queue the caller is running on reports ErrWouldDeadlock.
//
// Each input is at most maxFuzzOps operations, none of which waits on anything but the queues:
// an input runs in milliseconds, and a Close that does not finish within closeTimeout fails.
func FuzzQueueModel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 2, 2, 1, 3, 3, 4, 3, 0, 3, 5, 3})                    // a bit of everything
	f.Add([]byte{6, 0, 0, 1, 0, 2, 3, 1, 10, 2, 7, 0, 8, 1, 0, 1, 0, 0})             // target suspended, then a closed child
	f.Add([]byte{4, 3, 0, 3, 0, 4, 4, 3, 0, 3, 5, 3, 0, 4, 1, 3, 4, 3, 3, 4})        // barriers among q3 and q4
	f.Add([]byte{6, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 2, 10, 2, 9, 2, 8, 2, 2, 2}) // q2 full while suspended
	f.Add([]byte{11, 0, 11, 1, 11, 2, 11, 3, 11, 4, 0, 1, 3, 2})                     // Syncs that would deadlock
	f.Add([]byte{8, 0, 0, 1, 3, 2, 8, 3, 0, 4, 3, 4, 8, 4, 1, 3, 2, 0})              // parents closed before children
	f.Add([]byte{6, 3, 0, 4, 10, 4, 0, 3, 4, 3, 10, 3, 6, 3, 7, 3, 9, 3, 3, 4})      // suspended concurrent target
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 2*maxFuzzOps {
			ops = ops[:2*maxFuzzOps]
		}
		m := newModel()
		for i := 0; i+1 < len(ops); i += 2 {
			m.step(t, ops[i]%12, int(ops[i+1]%5))
		}
		m.finish(t)
	})
}

const (
	maxFuzzOps   = 200
	fuzzLimit    = 4 // q2's WithLimit
	closeTimeout = 5 * time.Second
	fuzzQueues   = 5
)

// parent is the model's target of each queue (-1: a Global root).
var parent = [fuzzQueues]int{-1, 0, 0, -1, 3}

// fuzzBlock is one block the fuzz target submitted, and what the model expects of it.
type fuzzBlock struct {
	q       int
	seq     int  // submission number on its queue
	barrier bool // a barrier (only q3 treats it as one)
	async   bool // counted by WithLimit (not a Sync)
	// q3's barriers: the q3 blocks accepted before it, which must all have finished when it
	// starts. q3's other blocks: the barriers accepted before them, all finished by then.
	doneBefore     int32
	barriersBefore int32
	inner          func() // more checks to make while running (Syncs that would deadlock)

	accepted bool // the queue took it (the fuzz goroutine only)
	runs     atomic.Int32
}

type model struct {
	qs        [fuzzQueues]*Queue
	suspended [fuzzQueues]int
	closed    [fuzzQueues]bool
	next      [fuzzQueues]int // submission numbers
	blocks    []*fuzzBlock

	// The fuzz goroutine's counts: q3's accepted blocks and barriers; q2's accepted Async
	// blocks, and that count when q2 was last suspended.
	q3accepted, q3barriers int32
	q2async, q2atSuspend   int32

	// Written by running blocks.
	mu        sync.Mutex
	errs      []string
	ran       [fuzzQueues][]int // submission numbers in the order the blocks started
	serialRun atomic.Int32      // blocks of q0, q1, q2 running now
	q4Run     atomic.Int32
	q3Run     atomic.Int32 // blocks running on q3: its own and q4's
	barrierOn atomic.Bool
	q3done    atomic.Int32 // q3's own blocks finished
	q3barDone atomic.Int32 // q3's barriers finished
	q2started atomic.Int32 // q2's Async blocks started
}

func newModel() *model {
	m := &model{}
	m.qs[0] = NewSerial("q0")
	m.qs[1] = NewSerial("q1", WithTarget(m.qs[0]))
	m.qs[2] = NewSerial("q2", WithTarget(m.qs[0]), WithLimit(fuzzLimit))
	m.qs[3] = NewConcurrent("q3", WithWidth(2))
	m.qs[4] = NewSerial("q4", WithTarget(m.qs[3]))
	return m
}

func (m *model) fail(format string, args ...any) {
	m.mu.Lock()
	m.errs = append(m.errs, fmt.Sprintf(format, args...))
	m.mu.Unlock()
}

// newBlock prepares the next block of queue i; the caller submits fn and records acceptance.
func (m *model) newBlock(i int, barrier, async bool) *fuzzBlock {
	b := &fuzzBlock{q: i, seq: m.next[i], barrier: barrier && i == 3, async: async}
	m.next[i]++
	if i == 3 {
		b.doneBefore, b.barriersBefore = m.q3accepted, m.q3barriers
	}
	m.blocks = append(m.blocks, b)
	return b
}

// accept records that the queue took b.
func (m *model) accept(b *fuzzBlock) {
	b.accepted = true
	switch {
	case b.q == 3:
		m.q3accepted++
		if b.barrier {
			m.q3barriers++
		}
	case b.q == 2 && b.async:
		m.q2async++
	}
}

// body is b's func: it checks the rules while it runs. runtime.Gosched between the checks at
// the start and at the end lets blocks that should not overlap overlap if the queue lets them.
func (m *model) body(b *fuzzBlock) func() {
	return func() {
		if b.runs.Add(1) != 1 {
			m.fail("block %d of q%d ran twice", b.seq, b.q)
		}
		m.mu.Lock()
		m.ran[b.q] = append(m.ran[b.q], b.seq)
		m.mu.Unlock()
		if b.q == 2 && b.async {
			m.q2started.Add(1)
		}
		m.enter(b)
		runtime.Gosched()
		if b.inner != nil {
			b.inner()
		}
		runtime.Gosched()
		m.leave(b)
	}
}

func (m *model) enter(b *fuzzBlock) {
	switch b.q {
	case 0, 1, 2:
		if m.serialRun.Add(1) != 1 {
			m.fail("q%d: block %d ran beside another block under the serial q0", b.q, b.seq)
		}
		return
	case 4:
		if m.q4Run.Add(1) != 1 {
			m.fail("q4: block %d ran beside another of q4's", b.seq)
		}
	}
	n := m.q3Run.Add(1)
	if n > 2 {
		m.fail("q%d: block %d made %d blocks run on q3, whose width is 2", b.q, b.seq, n)
	}
	switch {
	case b.barrier:
		if n != 1 {
			m.fail("q3: barrier %d started beside another block", b.seq)
		}
		if got := m.q3done.Load(); got != b.doneBefore {
			m.fail("q3: barrier %d started when %d of the %d blocks before it had finished", b.seq, got, b.doneBefore)
		}
		m.barrierOn.Store(true)
	case m.barrierOn.Load():
		m.fail("q%d: block %d started while a barrier of q3 ran", b.q, b.seq)
	case b.q == 3 && m.q3barDone.Load() < b.barriersBefore:
		m.fail("q3: block %d started before a barrier submitted before it finished", b.seq)
	}
}

func (m *model) leave(b *fuzzBlock) {
	switch b.q {
	case 0, 1, 2:
		if m.serialRun.Add(-1) != 0 {
			m.fail("q%d: block %d ended beside another block under the serial q0", b.q, b.seq)
		}
		return
	case 4:
		if m.q4Run.Add(-1) != 0 {
			m.fail("q4: block %d ended beside another of q4's", b.seq)
		}
	}
	if b.barrier {
		if n := m.q3Run.Load(); n != 1 {
			m.fail("q3: barrier %d ended beside %d other blocks", b.seq, n-1)
		}
		m.barrierOn.Store(false)
		m.q3barDone.Add(1)
	} else if m.barrierOn.Load() {
		m.fail("q%d: block %d ended while a barrier of q3 ran", b.q, b.seq)
	}
	if b.q == 3 {
		m.q3done.Add(1)
	}
	m.q3Run.Add(-1)
}

// runnable reports whether a Sync onto queue i can start: neither it nor a queue it needs is
// suspended by the model.
func (m *model) runnable(i int) bool {
	for x := i; x >= 0; x = parent[x] {
		if m.suspended[x] > 0 {
			return false
		}
	}
	return true
}

func (m *model) step(t *testing.T, op byte, i int) {
	q := m.qs[i]
	if m.closed[i] {
		m.refused(t, op, i)
		return
	}
	switch op {
	case 0, 1, 4:
		m.submit(t, i, op == 4, nil)
	case 2:
		m.try(t, i, m.newBlock(i, false, true))
	case 3, 5:
		if m.runnable(i) {
			b := m.newBlock(i, op == 5, false)
			if op == 5 {
				q.BarrierSync(m.body(b))
			} else {
				q.Sync(m.body(b))
			}
			m.accept(b)
		}
	case 6:
		q.Suspend()
		if i == 2 && m.suspended[i] == 0 {
			m.q2atSuspend = m.q2async
		}
		m.suspended[i]++
	case 7:
		if m.suspended[i] > 0 {
			q.Resume()
			m.suspended[i]--
		}
	case 8:
		m.close(t, i)
	case 9:
		m.resumeAll(i)
	case 10:
		m.syncTimeout(t, i)
	case 11:
		m.submit(t, i, false, m.wouldDeadlock(i))
	}
}

// submit does Async (or BarrierAsync). On q2 when it cannot drain, Async could wait forever
// for room, so it becomes TryAsync.
func (m *model) submit(t *testing.T, i int, barrier bool, inner func()) {
	b := m.newBlock(i, barrier, true)
	b.inner = inner
	if i == 2 && !m.runnable(2) {
		m.try(t, i, b)
		return
	}
	if barrier {
		m.qs[i].BarrierAsync(m.body(b))
	} else {
		m.qs[i].Async(m.body(b))
	}
	m.accept(b)
}

func (m *model) try(t *testing.T, i int, b *fuzzBlock) {
	startedBefore := m.q2started.Load()
	err := m.qs[i].TryAsync(m.body(b))
	switch {
	case err == nil:
		m.accept(b)
		if i == 2 && m.suspended[2] > 0 && m.q2async-m.q2atSuspend > fuzzLimit {
			t.Fatalf("q2 (limit %d) took a block with %d submitted since it was suspended", fuzzLimit, m.q2async-m.q2atSuspend-1)
		}
	case i == 2 && errors.Is(err, ErrFull):
		// Full means fuzzLimit blocks accepted and not started; the count of started blocks
		// read before the call can only be lower than when the queue refused.
		if backlog := m.q2async - startedBefore; backlog < fuzzLimit {
			t.Fatalf("q2 refused with ErrFull with at most %d of its limit %d pending", backlog, fuzzLimit)
		}
	default:
		t.Fatalf("TryAsync on q%d: %v", i, err)
	}
}

// syncTimeout does a SyncContext whose ctx ends soon: if it says so, its fn must never run; if
// the queue cannot run (suspended), it must say so.
func (m *model) syncTimeout(t *testing.T, i int) {
	runnable := m.runnable(i)
	b := m.newBlock(i, false, false)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Microsecond)
	defer cancel()
	body := m.body(b)
	err := m.qs[i].SyncContext(ctx, func(context.Context) { body() })
	switch {
	case err == nil && !runnable:
		t.Fatalf("SyncContext on q%d ran while the queue or its target was suspended", i)
	case err == nil:
		m.accept(b)
	case !errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("SyncContext on q%d: %v, want nil or context.DeadlineExceeded", i, err)
	case b.runs.Load() != 0:
		t.Fatalf("SyncContext on q%d returned %v after running its fn", i, err)
	}
}

// refused checks that a closed queue refuses new blocks.
func (m *model) refused(t *testing.T, op byte, i int) {
	q := m.qs[i]
	b := m.newBlock(i, false, true)
	switch op % 3 {
	case 0:
		if err := q.TryAsync(m.body(b)); !errors.Is(err, ErrClosed) {
			t.Fatalf("TryAsync on the closed q%d: %v, want ErrClosed", i, err)
		}
	case 1:
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("Async on the closed q%d did not panic", i)
				}
			}()
			q.Async(m.body(b))
		}()
	case 2:
		err := q.SyncContext(context.Background(), func(context.Context) { m.body(b)() })
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("SyncContext on the closed q%d: %v, want ErrClosed", i, err)
		}
	}
}

// wouldDeadlock returns checks for a block of queue i: a Sync from it onto a queue that it
// needs, and that the block holds, must refuse (ErrClosed is also right if that queue closed).
func (m *model) wouldDeadlock(i int) func() {
	var onto []int
	switch i {
	case 0, 1, 2:
		onto = []int{0, 1, 2} // all need q0, which runs the caller
	case 4:
		onto = []int{4}
	}
	return func() {
		for _, x := range onto {
			err := m.qs[x].SyncContext(context.Background(), func(context.Context) {
				m.fail("Sync onto q%d from a block of q%d ran", x, i)
			})
			if !errors.Is(err, ErrWouldDeadlock) && !errors.Is(err, ErrClosed) {
				m.fail("Sync onto q%d from a block of q%d: %v, want ErrWouldDeadlock", x, i, err)
			}
		}
		if i == 3 || i == 4 {
			// A barrier on q3 would wait for this block, which holds a slot of q3.
			defer func() {
				r := recover()
				s, _ := r.(string)
				if !strings.Contains(s, ErrWouldDeadlock.Error()) && !strings.Contains(s, ErrClosed.Error()) {
					m.fail("BarrierSync onto q3 from a block of q%d: panic %v, want ErrWouldDeadlock", i, r)
				}
			}()
			m.qs[3].BarrierSync(func() { m.fail("BarrierSync onto q3 from a block of q%d ran", i) })
		}
	}
}

// resumeAll balances every Suspend of queue i.
func (m *model) resumeAll(i int) {
	for ; m.suspended[i] > 0; m.suspended[i]-- {
		m.qs[i].Resume()
	}
}

// close closes queue i (resuming it and its target first: Close waits for its blocks) and
// checks that every block accepted on it has run.
func (m *model) close(t *testing.T, i int) {
	for x := i; x >= 0; x = parent[x] {
		m.resumeAll(x)
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := m.qs[i].Close(ctx); err != nil {
		t.Fatalf("Close of q%d: %v (stats %+v)", i, err, m.qs[i].Stats())
	}
	m.closed[i] = true
	for _, b := range m.blocks {
		if b.q == i && b.accepted && b.runs.Load() != 1 {
			t.Fatalf("Close of q%d returned, and its block %d ran %d times", i, b.seq, b.runs.Load())
		}
	}
}

func (m *model) finish(t *testing.T) {
	for i := range m.qs {
		m.resumeAll(i)
	}
	for _, i := range []int{1, 2, 0, 4, 3} { // children first
		if !m.closed[i] {
			m.close(t, i)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) > 0 {
		t.Fatalf("%d broken rules, the first: %s", len(m.errs), m.errs[0])
	}
	for _, b := range m.blocks {
		want := int32(0)
		if b.accepted {
			want = 1
		}
		if got := b.runs.Load(); got != want {
			t.Fatalf("block %d of q%d (accepted %v) ran %d times", b.seq, b.q, b.accepted, got)
		}
	}
	for i := range m.qs {
		if i == 3 {
			continue // concurrent: no order to check once started
		}
		for k := 1; k < len(m.ran[i]); k++ {
			if m.ran[i][k] <= m.ran[i][k-1] {
				t.Fatalf("q%d ran block %d after block %d", i, m.ran[i][k], m.ran[i][k-1])
			}
		}
	}
}
