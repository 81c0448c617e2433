package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzQueueModel plays random sequences of operations on a small hierarchy and checks the
// queues against a simple model:
//
//	q0 serial (on Global), q1 and q2 serial targeting q0, q3 concurrent of width 2.
//
// Blocks of q0, q1 and q2 never overlap (one serial target); each serial queue runs its
// blocks in submission order; q3 never runs more than 2 blocks at once, and its barriers run
// alone, after everything submitted before them and before everything submitted after;
// every accepted block runs exactly once by the time Close returns; a closed queue refuses.
func FuzzQueueModel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 2, 2, 1, 3, 3, 4, 3, 0, 3, 5, 3})
	f.Add([]byte{6, 0, 0, 0, 0, 1, 7, 0, 1, 2, 6, 1, 0, 1, 7, 1})
	f.Add([]byte{4, 3, 0, 3, 0, 3, 4, 3, 0, 3, 5, 3, 0, 3, 1, 3})
	f.Add([]byte{8, 2, 0, 2, 9, 2, 0, 2, 1, 2, 6, 3, 2, 3, 7, 3})
	f.Add([]byte{1, 0, 1, 1, 1, 2, 1, 3, 8, 0, 0, 0, 0, 1, 3, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		m := newModel()
		for i := 0; i+1 < len(ops); i += 2 {
			m.step(t, ops[i]%10, int(ops[i+1]%4))
		}
		m.finish(t)
	})
}

type model struct {
	qs        [4]*Queue
	suspended [4]int
	closed    [4]bool

	mu        sync.Mutex
	errs      []string
	serialRun atomic.Int32 // blocks of q0, q1, q2 running now
	concRun   atomic.Int32 // blocks of q3 running now
	barrierOn atomic.Bool
	next      [4]int   // per queue: sequence number of the next block submitted
	ran       [4][]int // per queue: sequence numbers in the order blocks ran
	// q3: how many of its blocks have finished, and barriers so far
	q3done     atomic.Int32
	q3barriers atomic.Int32
	accepted   int
	executed   atomic.Int32
}

func newModel() *model {
	m := &model{}
	m.qs[0] = NewSerial("q0")
	m.qs[1] = NewSerial("q1", WithTarget(m.qs[0]))
	m.qs[2] = NewSerial("q2", WithTarget(m.qs[0]))
	m.qs[3] = NewConcurrent("q3", WithWidth(2))
	return m
}

func (m *model) fail(msg string) {
	m.mu.Lock()
	m.errs = append(m.errs, msg)
	m.mu.Unlock()
}

// block returns the body of the next block of queue i, which checks the rules as it runs.
func (m *model) block(i int, barrier bool) func() {
	seq := m.next[i]
	m.next[i]++
	m.accepted++
	submittedBefore := int32(seq)
	barriersBefore := m.q3barriers.Load()
	if i == 3 && barrier {
		m.q3barriers.Add(1)
	}
	return func() {
		defer m.executed.Add(1)
		m.mu.Lock()
		m.ran[i] = append(m.ran[i], seq)
		m.mu.Unlock()
		if i < 3 {
			if m.serialRun.Add(1) != 1 {
				m.fail("blocks under the serial q0 overlapped")
			}
			m.serialRun.Add(-1)
			return
		}
		n := m.concRun.Add(1)
		if n > 2 {
			m.fail("q3 ran more than its width")
		}
		if m.barrierOn.Load() {
			m.fail("a block of q3 ran beside a barrier")
		}
		if barrier {
			if n != 1 {
				m.fail("a barrier of q3 ran beside another block")
			}
			if m.q3done.Load() != submittedBefore {
				m.fail("a barrier of q3 started before the blocks submitted before it finished")
			}
			m.barrierOn.Store(true)
			m.barrierOn.Store(false)
		} else if got := m.q3barriers.Load(); got < barriersBefore {
			m.fail("a block of q3 started before a barrier submitted before it")
		}
		m.concRun.Add(-1)
		m.q3done.Add(1)
	}
}

// chainRunnable: Sync onto queue i would not wait forever for a suspension.
func (m *model) chainRunnable(i int) bool {
	if m.suspended[i] > 0 {
		return false
	}
	return i == 0 || i == 3 || m.suspended[0] == 0
}

func (m *model) step(t *testing.T, op byte, i int) {
	q := m.qs[i]
	if m.closed[i] {
		if err := q.TryAsync(func() {}); !errors.Is(err, ErrClosed) {
			t.Fatalf("TryAsync on closed %s: %v", q.Label(), err)
		}
		return
	}
	switch op {
	case 0, 1:
		q.Async(m.block(i, false))
	case 2:
		if err := q.TryAsync(m.block(i, false)); err != nil {
			t.Fatalf("TryAsync on %s: %v", q.Label(), err)
		}
	case 3:
		if m.chainRunnable(i) {
			q.Sync(m.block(i, false))
		}
	case 4:
		q.BarrierAsync(m.block(i, true))
	case 5:
		if m.chainRunnable(i) {
			q.BarrierSync(m.block(i, true))
		}
	case 6:
		q.Suspend()
		m.suspended[i]++
	case 7:
		if m.suspended[i] > 0 {
			q.Resume()
			m.suspended[i]--
		}
	case 8:
		if i != 0 { // keep q0 open for q1 and q2
			m.resumeAll(i)
			if i != 3 {
				m.resumeAll(0) // a queue's blocks run on its target: it must be running
			}
			m.close(t, i)
		}
	case 9:
		m.resumeAll(i)
	}
}

func (m *model) resumeAll(i int) {
	for ; m.suspended[i] > 0; m.suspended[i]-- {
		m.qs[i].Resume()
	}
}

func (m *model) close(t *testing.T, i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.qs[i].Close(ctx); err != nil {
		t.Fatalf("Close of %s: %v", m.qs[i].Label(), err)
	}
	m.closed[i] = true
}

func (m *model) finish(t *testing.T) {
	for i := range m.qs {
		m.resumeAll(i)
	}
	for _, i := range []int{1, 2, 3, 0} {
		if !m.closed[i] {
			m.close(t, i)
		}
	}
	if got := int(m.executed.Load()); got != m.accepted {
		t.Fatalf("%d blocks accepted, %d ran", m.accepted, got)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) > 0 {
		t.Fatal(m.errs[0])
	}
	for i := range 3 {
		for k, seq := range m.ran[i] {
			if seq != k {
				t.Fatalf("%s ran block %d in place %d", m.qs[i].Label(), seq, k)
			}
		}
	}
}
