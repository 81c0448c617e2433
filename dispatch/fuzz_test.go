package dispatch

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dispatchkit/dispatchkit/queue"
)

// FuzzDispatchModel plays random sequences of operations on the dispatch primitives, inside a
// synctest bubble (so time is fake and every input replays the same way), and checks them
// against a simple model after each operation, once everything it set off has settled:
//
//	qa serial (Suspend/Resume), qb serial WithLimit(1) that can be held full (suspended with
//	a block pending: a block waiting on a channel would hold the only worker at GOMAXPROCS=1) and
//	that can be closed, qc serial for notifications that can be closed; all three have a
//	panic handler.
//	add: a DataAdd source on qa; or: a DataOr source on qb; tm: a timer (1s) on qa; each can
//	be suspended, resumed, cancelled, and told to panic in its next handler call.
//	After items on qa or qb, plain work items run by qa; their Cancel and Notify (onto qa or
//	qc); a Group (Enter, Leave, Async on qa, Notify onto qa or qc, Wait); a Semaphore.
//
// The rules: a source delivers nothing before its first Resume, while suspended or after
// Cancel returned; what it delivers is what was merged (sum, or), and once it runs on an idle
// queue, everything merged; a timer calls its handler at most once per deadline, and once it
// can run, for the last deadline passed; a handler's panic reaches the panic handler and the
// source goes on; the cancel handler runs at most once, on its queue, after Cancel, and
// exactly once if Cancel returned before its queue was closed; on a closed queue sources go
// quiet and nothing panics. A work item runs at most once, never after a Cancel that returned
// before it started, never before its After delay; it finishes once its queue ran it, or at
// once when cancelled; an After item whose queue closed before its time ends cancelled. A
// notification runs once, after its group emptied or its item finished; one refused by the
// closed qc is counted in qc's Stats().Rejected. Group.Wait and Semaphore follow their
// counts; a Semaphore wakes its waiters in order.
//
// Signal sources are left out: signal.Notify cannot be called inside a bubble (the runtime's
// signal-mask goroutine it may start would belong to the bubble and be shared with the rest of
// the process: a fatal error), so a signal source cannot be resumed there.
func FuzzDispatchModel(f *testing.F) {
	f.Add([]byte{0, 5, 2, 1, 0, 3, 6, 1, 4, 0})                                             // merges before and after Resume, Cancel
	f.Add([]byte{5, 1, 6, 3, 6, 2, 5, 0, 6, 5, 5, 1, 6, 3, 4, 2})                           // timer suspended across deadlines
	f.Add([]byte{3, 1, 8, 0, 1, 1, 1, 2, 9, 1, 8, 1, 6, 1})                                 // qb full, merges wait, qb closes
	f.Add([]byte{11, 5, 11, 2, 8, 0, 6, 2, 9, 0, 6, 3, 8, 1, 6, 1})                         // After items on a full queue that closes
	f.Add([]byte{10, 0, 0, 1, 2, 1, 0, 2, 10, 2, 5, 1, 6, 2, 6, 2, 4, 0})                   // panicking handlers
	f.Add([]byte{14, 0, 14, 0, 16, 0, 16, 1, 15, 0, 7, 0, 14, 1, 17, 0, 9, 3, 14, 1, 7, 1}) // group, qa suspended, qc closed
	f.Add([]byte{20, 0, 11, 4, 13, 0, 13, 1, 12, 0, 12, 1, 9, 3, 6, 2, 13, 3})              // work items, notifications
	f.Add([]byte{18, 0, 18, 0, 18, 0, 19, 0, 21, 0, 19, 0, 19, 0, 19, 0, 18, 0})            // semaphore
	f.Add([]byte{3, 1, 1, 1, 8, 0, 1, 4, 4, 1, 6, 1, 8, 1, 6, 1})                           // Cancel while qb is full
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 2*maxDispatchOps {
			ops = ops[:2*maxDispatchOps]
		}
		// An input runs in milliseconds; one that hangs crashes the process loudly (and the
		// fuzzer keeps it), with every goroutine's stack.
		watchdog := time.AfterFunc(waitTimeout, func() {
			buf := make([]byte, 1<<20)
			panic(fmt.Sprintf("FuzzDispatchModel: input %x hung:\n%s", ops, buf[:runtime.Stack(buf, true)]))
		})
		defer watchdog.Stop()
		synctest.Test(t, func(t *testing.T) {
			m := newDModel()
			for i := 0; i+1 < len(ops); i += 2 {
				m.step(ops[i]%dispatchOps, ops[i+1])
				synctest.Wait()
				m.check(fmt.Sprintf("after op %d (%d %d)", i/2, ops[i]%dispatchOps, ops[i+1]))
				if m.failing() {
					break // finish still lets every goroutine of the bubble end
				}
			}
			m.finish()
			m.report(t)
		})
	})
}

const (
	maxDispatchOps = 100
	dispatchOps    = 22
	tick           = time.Second // the timer's interval
)

// dSource is the model of one source.
type dSource struct {
	name      string
	susp      int  // suspensions (1 at creation)
	resumed   bool // it ran once (a Resume took it out of every suspension)
	cancelled bool // Cancel was called
	cancelRet bool // the first Cancel returned
	retBefore bool // Cancel returned before the source's queue was closed
	panicNext bool

	merged, got uint64 // add: sums; or: ORs
	cancelRuns  int
	calls       int       // timer
	lastCall    time.Time // timer
}

type dItem struct {
	w         *WorkItem
	after     bool
	onB       bool
	due       time.Time
	cancelled bool // Cancel returned
	runs      int
}

type dNote struct {
	onC     bool
	item    *dItem // an item's notification; nil: the group's
	epoch   int    // the group's: it fires once the group has emptied more than epoch times
	runs    int
	created int
}

type dModel struct {
	qa, qb, qc *queue.Queue
	add, or    *DataSource
	tm         *Source
	g          Group
	sem        *Semaphore

	// Changed by the fuzz goroutine, read by blocks, under mu.
	mu        sync.Mutex
	errs      []string
	qaSusp    int
	bHeld     bool // qb is suspended, full
	bClosed   bool // Close of qb was called
	bCloseAt  time.Time
	cClosed   bool
	src       [3]*dSource // add, or, tm
	firstTick time.Time   // the timer's first Resume
	panics    int         // handler panics expected
	caught    int         // panics that reached a panic handler
	items     []*dItem
	notes     []*dNote
	groupN    int // units in the group
	entered   int // of which Enter's (the others are Async's)
	emptied   int
	semValue  int
	waiters   []int // semaphore waiters, oldest first
	nextWait  int
	woken     []int // in the order Signal woke them
	wokeOrder []int // in the order they returned
}

func newDModel() *dModel {
	m := &dModel{semValue: 1}
	caught := func(r any, _ []byte) {
		m.mu.Lock()
		m.caught++
		m.mu.Unlock()
	}
	m.qa = queue.NewSerial("qa", queue.WithPanicHandler(caught))
	m.qb = queue.NewSerial("qb", queue.WithPanicHandler(caught), queue.WithLimit(1))
	m.qc = queue.NewSerial("qc", queue.WithPanicHandler(caught))
	m.sem = NewSemaphore(1)
	for i, name := range []string{"add", "or", "timer"} {
		m.src[i] = &dSource{name: name, susp: 1}
	}
	m.add = NewDataAdd(m.qa, func(n uint64) { m.delivered(0, n) })
	m.or = NewDataOr(m.qb, func(n uint64) { m.delivered(1, n) })
	m.tm = NewTimer(m.qa, tick, 0, func() { m.delivered(2, 0) })
	for i, q := range []*queue.Queue{m.qa, m.qb, m.qa} {
		s := m.src[i]
		m.source(i).SetCancelHandler(func() {
			if !q.IsCurrent() {
				m.fail("%s: the cancel handler ran off its queue", s.name)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if !s.cancelled {
				m.failLocked("%s: the cancel handler ran before Cancel", s.name)
			}
			s.cancelRuns++
		})
	}
	return m
}

func (m *dModel) source(i int) *source {
	switch i {
	case 0:
		return &m.add.source
	case 1:
		return &m.or.source
	}
	return &m.tm.source
}

func (m *dModel) fail(format string, args ...any) {
	m.mu.Lock()
	m.failLocked(format, args...)
	m.mu.Unlock()
}

func (m *dModel) failLocked(format string, args ...any) {
	m.errs = append(m.errs, fmt.Sprintf(format, args...))
}

func (m *dModel) failing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.errs) > 0
}

func (m *dModel) report(t *testing.T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.errs {
		t.Error(e)
	}
}

// delivered is the handler of source i.
func (m *dModel) delivered(i int, n uint64) {
	m.mu.Lock()
	s := m.src[i]
	switch {
	case !s.resumed:
		m.failLocked("%s: delivered before its first Resume", s.name)
	case s.susp > 0:
		m.failLocked("%s: delivered while suspended", s.name)
	case s.cancelRet:
		m.failLocked("%s: delivered after Cancel returned", s.name)
	}
	switch i {
	case 0:
		if n == 0 {
			m.failLocked("add: delivered 0")
		}
		s.got += n
	case 1:
		if n == 0 || n&^s.merged != 0 {
			m.failLocked("or: delivered %b, merged %b", n, s.merged)
		}
		s.got |= n
	case 2:
		now := time.Now()
		if passed := int(now.Sub(m.firstTick) / tick); s.calls >= passed {
			m.failLocked("timer: call %d when %d deadlines have passed", s.calls+1, passed)
		}
		s.calls++
		s.lastCall = now
	}
	p := s.panicNext
	s.panicNext = false
	if p {
		m.panics++
	}
	m.mu.Unlock()
	if p {
		panic("fuzz: a handler's panic")
	}
}

func (m *dModel) step(op, arg byte) {
	switch op {
	case 0: // merge into add
		m.mu.Lock()
		if !m.src[0].cancelled {
			m.src[0].merged += uint64(arg) + 1
		}
		m.mu.Unlock()
		m.add.Merge(uint64(arg) + 1)
	case 1: // merge into or: it may wait for room on qb
		v := uint64(1) << (arg % 8)
		m.mu.Lock()
		if !m.src[1].cancelled {
			m.src[1].merged |= v
		}
		m.mu.Unlock()
		go m.or.Merge(v)
	case 2, 3, 5: // suspend or resume add, or, tm
		m.suspendResume(map[byte]int{2: 0, 3: 1, 5: 2}[op], arg%2 == 0)
	case 4: // cancel a source
		m.cancel(int(arg % 3))
	case 6: // let time pass
		time.Sleep(time.Duration(arg%4+1) * tick / 2)
	case 7: // suspend or resume qa
		m.mu.Lock()
		defer m.mu.Unlock()
		if arg%2 == 0 && m.qaSusp < 2 {
			m.qa.Suspend()
			m.qaSusp++
		} else if m.qaSusp > 0 {
			m.qaSusp--
			m.qa.Resume()
		}
	case 8: // hold qb full, or release it
		m.mu.Lock()
		defer m.mu.Unlock()
		if arg%2 == 0 && !m.bHeld && !m.bClosed {
			m.qb.Suspend()
			m.bHeld = true
			_ = m.qb.TryAsync(func() {}) // ErrFull if a block is pending already
		} else if m.bHeld {
			m.bHeld = false
			m.qb.Resume()
		}
	case 9: // close qb (in the background: it waits while qb is held) or qc
		m.mu.Lock()
		defer m.mu.Unlock()
		if arg%2 == 0 && !m.bClosed {
			m.bClosed, m.bCloseAt = true, time.Now()
			for _, s := range m.src {
				s.retBefore = s.cancelRet
			}
			go m.qb.Close(context.Background())
		} else if arg%2 == 1 && !m.cClosed {
			m.cClosed = true
			// Close returns once qc has run its blocks, which take mu: not under it.
			m.mu.Unlock()
			if err := m.qc.Close(context.Background()); err != nil {
				m.fail("Close of qc: %v", err)
			}
			m.mu.Lock()
		}
	case 10: // the next handler call of a source panics
		m.mu.Lock()
		m.src[arg%3].panicNext = true
		m.mu.Unlock()
	case 11: // After
		m.after(time.Duration(arg%3)*tick, arg&4 != 0)
	case 12: // cancel an item
		if it := m.item(arg); it != nil {
			it.w.Cancel()
			m.mu.Lock()
			it.cancelled = true
			m.mu.Unlock()
		}
	case 13: // notify after an item
		if it := m.item(arg); it != nil {
			m.notify(arg&1 != 0, it)
		}
	case 14: // group Enter or Leave
		m.enterLeave(arg%2 == 0)
	case 15: // group Async on qa
		m.mu.Lock()
		m.groupN++
		m.mu.Unlock()
		m.g.Async(m.qa, func() {
			m.mu.Lock()
			m.leftLocked()
			m.mu.Unlock()
		})
	case 16: // group Notify
		m.notify(arg%2 != 0, nil)
	case 17: // group Wait
		m.groupWait()
	case 18: // semaphore Wait
		m.semWait()
	case 19: // semaphore Signal
		m.semSignal()
	case 20: // a plain work item, run by qa
		m.plainItem()
	case 21: // semaphore Wait with an ended context
		m.semWaitEnded()
	}
}

func (m *dModel) suspendResume(i int, suspend bool) {
	m.mu.Lock()
	s := m.src[i]
	m.mu.Unlock()
	src := m.source(i)
	if suspend && s.susp < 3 {
		src.Suspend()
		m.mu.Lock()
		s.susp++
		m.mu.Unlock()
		return
	}
	if s.susp == 0 {
		return
	}
	m.mu.Lock()
	s.susp--
	if !s.resumed && s.susp == 0 { // the source runs from now on: a timer's grid starts
		s.resumed = true
		if i == 2 {
			m.firstTick = time.Now()
		}
	}
	m.mu.Unlock()
	if i == 1 {
		go src.Resume() // it may wait for room on qb to deliver what was merged
		return
	}
	src.Resume()
}

func (m *dModel) cancel(i int) {
	m.mu.Lock()
	s := m.src[i]
	first := !s.cancelled
	s.cancelled = true
	m.mu.Unlock()
	done := func() {
		if !first {
			return // a second Cancel returns at once, the first may still wait for room
		}
		m.mu.Lock()
		s.cancelRet = true
		m.mu.Unlock()
	}
	if i == 1 { // it may wait for room on qb
		go func() { m.or.Cancel(); done() }()
		return
	}
	m.source(i).Cancel()
	done()
}

func (m *dModel) after(d time.Duration, onB bool) {
	q := m.qa
	if onB {
		q = m.qb
	}
	it := &dItem{after: true, onB: onB, due: time.Now().Add(d)}
	m.mu.Lock()
	defer m.mu.Unlock() // After's timer never fires before After returns: no block waits for mu
	it.w = After(d, q, func() { m.itemRan(it) })
	m.items = append(m.items, it)
}

func (m *dModel) plainItem() {
	it := &dItem{}
	it.w = NewWorkItem(func() { m.itemRan(it) })
	m.mu.Lock()
	m.items = append(m.items, it)
	m.mu.Unlock()
	m.qa.Async(it.w.Run)
}

func (m *dModel) itemRan(it *dItem) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if it.cancelled {
		m.failLocked("an item ran after Cancel returned")
	}
	if time.Now().Before(it.due) {
		m.failLocked("an After item ran before its time")
	}
	if it.onB && m.bClosed && m.bCloseAt.Before(it.due) {
		m.failLocked("an After item ran on a queue closed before its time")
	}
	it.runs++
}

func (m *dModel) item(arg byte) *dItem {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.items) == 0 {
		return nil
	}
	return m.items[int(arg/2)%len(m.items)]
}

func (m *dModel) notify(onC bool, it *dItem) {
	q := m.qa
	if onC {
		q = m.qc
	}
	m.mu.Lock()
	n := &dNote{onC: onC, item: it, epoch: m.emptied, created: len(m.notes)}
	if it == nil && m.groupN == 0 {
		n.epoch = m.emptied - 1 // empty now: it fires at once
	}
	m.notes = append(m.notes, n)
	m.mu.Unlock()
	fn := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		n.runs++
		if !m.fired(n) {
			m.failLocked("notification %d ran before its group emptied or its item finished", n.created)
		}
	}
	if it != nil {
		it.w.Notify(q, fn)
	} else {
		m.g.Notify(q, fn)
	}
}

// fired reports whether n's group has emptied, or its item finished. mu is held.
func (m *dModel) fired(n *dNote) bool {
	if n.item != nil {
		return closedChan(n.item.w.done)
	}
	return m.emptied > n.epoch
}

func closedChan(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (m *dModel) leftLocked() {
	m.groupN--
	if m.groupN == 0 {
		m.emptied++
	}
}

func (m *dModel) enterLeave(enter bool) {
	m.mu.Lock()
	if enter {
		m.groupN++
		m.entered++
		m.mu.Unlock()
		m.g.Enter()
		return
	}
	if m.entered == 0 {
		m.mu.Unlock()
		return // Leave only what Enter added: an Async's block leaves for itself
	}
	m.entered--
	m.leftLocked()
	m.mu.Unlock()
	m.g.Leave()
}

func (m *dModel) groupWait() {
	m.mu.Lock()
	n := m.groupN
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	if n > 0 {
		cancel() // it would wait: have it give up at once
	}
	defer cancel()
	err := m.g.Wait(ctx)
	if (err == nil) != (n == 0) {
		m.fail("Group.Wait with %d units left: %v", n, err)
	}
}

func (m *dModel) semWait() {
	m.mu.Lock()
	if m.semValue > 0 {
		m.semValue--
		m.mu.Unlock()
		if err := m.sem.Wait(context.Background()); err != nil {
			m.fail("Semaphore.Wait with a unit: %v", err)
		}
		return
	}
	id := m.nextWait
	m.nextWait++
	m.waiters = append(m.waiters, id)
	m.mu.Unlock()
	go func() {
		if err := m.sem.Wait(context.Background()); err != nil {
			m.fail("Semaphore.Wait: %v", err)
		}
		m.mu.Lock()
		m.wokeOrder = append(m.wokeOrder, id)
		m.mu.Unlock()
	}()
}

func (m *dModel) semWaitEnded() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.mu.Lock()
	had := m.semValue > 0
	if had {
		m.semValue--
	}
	m.mu.Unlock()
	if err := m.sem.Wait(ctx); (err == nil) != had {
		m.fail("Semaphore.Wait with an ended context and value>0 %v: %v", had, err)
	}
}

func (m *dModel) semSignal() {
	woke := m.sem.Signal()
	m.mu.Lock()
	defer m.mu.Unlock()
	if woke != (len(m.waiters) > 0) {
		m.failLocked("Semaphore.Signal reported %v with %d waiters", woke, len(m.waiters))
	}
	if len(m.waiters) > 0 {
		m.woken = append(m.woken, m.waiters[0])
		m.waiters = m.waiters[1:]
	} else {
		m.semValue++
	}
}

// check compares the settled state with the model.
func (m *dModel) check(when string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	aRuns := m.qaSusp == 0
	bRuns := !m.bHeld
	for i, s := range m.src {
		runs := aRuns
		if i == 1 {
			runs = bRuns && !m.bClosed
		}
		live := s.resumed && s.susp == 0 && !s.cancelled && runs
		switch {
		case i < 2 && s.got != s.merged && live:
			m.failLocked("%s %s: delivered %d, merged %d", when, s.name, s.got, s.merged)
		case i == 2 && live:
			if last := m.firstTick.Add(now.Sub(m.firstTick) / tick * tick); last.After(m.firstTick) && s.lastCall.Before(last) {
				m.failLocked("%s timer: the deadline at %v not delivered (last call %v)", when, last, s.lastCall)
			}
		}
		if s.cancelRuns > 1 {
			m.failLocked("%s %s: the cancel handler ran %d times", when, s.name, s.cancelRuns)
		}
		// Once Cancel has returned, its block was accepted (a closed queue still runs it),
		// unless the queue was closed first.
		runs = aRuns
		if i == 1 {
			runs = bRuns && (!m.bClosed || s.retBefore)
		}
		if due := s.cancelRet && runs; due && s.cancelRuns != 1 {
			m.failLocked("%s %s: cancelled, the cancel handler ran %d times", when, s.name, s.cancelRuns)
		}
	}
	if m.caught != m.panics {
		m.failLocked("%s: %d handler panics, %d reached a panic handler", when, m.panics, m.caught)
	}
	for k, it := range m.items {
		done := closedChan(it.w.done)
		runs := aRuns
		if it.onB {
			runs = bRuns
		}
		switch {
		case it.runs > 1:
			m.failLocked("%s: item %d ran %d times", when, k, it.runs)
		case done && it.runs == 0 && !it.w.Cancelled():
			m.failLocked("%s: item %d finished without running or being cancelled", when, k)
		case !done && runs && (it.cancelled || !now.Before(it.due)):
			m.failLocked("%s: item %d not finished (cancelled %v)", when, k, it.cancelled)
		case it.onB && m.bClosed && m.bCloseAt.Before(it.due) && !now.Before(it.due) && runs && !it.w.Cancelled():
			m.failLocked("%s: item %d, whose queue closed before its time, did not end cancelled", when, k)
		}
	}
	var cFired, cRan int
	for _, n := range m.notes {
		fired := m.fired(n)
		switch {
		case n.runs > 1:
			m.failLocked("%s: notification %d ran %d times", when, n.created, n.runs)
		case n.onC:
			if fired {
				cFired++
				cRan += n.runs
			}
		case fired && aRuns && n.runs == 0:
			m.failLocked("%s: notification %d did not run", when, n.created)
		}
	}
	if rej := int(m.qc.Stats().Rejected); cFired != cRan+rej {
		m.failLocked("%s: of %d notifications on qc, %d ran and %d were refused", when, cFired, cRan, rej)
	}
	if !m.cClosed && cFired != cRan {
		m.failLocked("%s: %d notifications on the open qc, %d ran", when, cFired, cRan)
	}
	if len(m.wokeOrder) != len(m.woken) {
		m.failLocked("%s: Signal woke %d waiters, %d returned", when, len(m.woken), len(m.wokeOrder))
	} else {
		for k := range m.woken {
			if m.woken[k] != m.wokeOrder[k] {
				m.failLocked("%s: the semaphore woke waiter %d, not the oldest, %d", when, m.wokeOrder[k], m.woken[k])
				break
			}
		}
	}
}

// finish lets everything run, cancels the sources, closes the queues and checks what is
// left: every goroutine the bubble started must end.
func (m *dModel) finish() {
	m.mu.Lock()
	if m.bHeld {
		m.bHeld = false
		m.qb.Resume()
	}
	for ; m.qaSusp > 0; m.qaSusp-- {
		m.qa.Resume()
	}
	m.mu.Unlock()
	for range len(m.waiters) {
		m.semSignal()
		synctest.Wait() // the woken waiter returns before the next is woken
	}
	for {
		m.mu.Lock()
		n := m.entered
		m.mu.Unlock()
		if n == 0 {
			break
		}
		m.enterLeave(false)
	}
	time.Sleep(3 * tick) // every After item is due
	synctest.Wait()
	m.check("at the end")
	for i := range m.src {
		m.cancel(i)
	}
	synctest.Wait()
	m.check("after Cancel")
	for _, q := range []*queue.Queue{m.qa, m.qb, m.qc} {
		if err := q.Close(context.Background()); err != nil {
			m.fail("Close of %s: %v", q.Label(), err)
		}
	}
}
