package queue

import (
	"runtime"
	"sync/atomic"
	"time"
)

// drain runs a batch of q's blocks on goroutine g. It is itself a block of q's target (or a
// root worker's item): this is how a queue's blocks run on its target. first, if not nil, is
// the block that made the idle plain serial queue q runnable, handed with the drain
// (executor.handFirst) instead of put in the batch.
func (q *Queue) drain(g uintptr, first func()) {
	prev, had, on := enterRunning(q, g)
	defer leaveRunning(g, prev, had, on)
	q.setLabels()
	if q.kind == serialKind {
		q.drainSerial(g, first)
	} else {
		q.drainConcurrent(g)
	}
}

// drainSerial runs the queue's blocks in order. It takes everything pending under one lock
// (so producers and the drainer rarely meet on the lock), runs up to batchSize of them, and
// then yields: it queues itself again at the back of its target, keeping what is left in its
// private batch. It stops early for a Sync caller (which it hands the queue to) or when the
// queue is suspended; then it puts what it took back in front of the pending blocks.
func (q *Queue) drainSerial(g uintptr, first func()) {
	// inBlock is set while a block (or a child's drain) runs: if it ends the goroutine with
	// runtime.Goexit, the deferred call gives the queue back as a returning block would.
	var counted uint64
	var inBlock blockState
	lone := false
	defer func() {
		if inBlock != notInBlock {
			if lone {
				q.mu.Lock()
				q.endLoneLocked(g)
				q.mu.Unlock()
			}
			q.serialDrainerExited(counted, inBlock == inOwnBlock)
		}
	}()
	ran, total := 0, 0
	// A lone episode: the one block a submitter handed the idle queue without the lock, and
	// nothing queued since (the word is exactly the submitter's, with the lone count). The
	// drainer takes the queue with one CAS that names it the owner, runs the block, and gives
	// the queue back with another CAS that also counts the block in the word's lone count
	// (accepted and executed at once, not in acc and done), no lock: whoever takes the queue
	// next sees the block counted, as after any drain. Anything that came meanwhile (a block
	// or Sync caller queued, a Suspend, a Close) changed the word, and the drainer goes on as
	// any other, under the lock, as it does when the count is full. The block comes with the
	// drain (first, the batch empty: a hand-off from the submitter's worker), or waits in the
	// batch.
	h := q.hold.Load()
	c := h & holdCount // only lone drainers change it, and only this one while the word is its
	w := holdBusy | holdFirst | holdLone | uint64(g)<<holdShift | c
	lonely := h == holdBusy|holdFirst|c && uint64(g) < 1<<(64-holdShift)
	if first != nil && (!lonely || !q.hold.CompareAndSwap(h, w)) {
		q.batch.pushBack(item{fn: first}) // an ordinary drain: the block goes first
		first = nil
		lonely = false
	}
	if first != nil || lonely && q.batch.n == 1 && !q.counted && q.hold.CompareAndSwap(h, w) {
		lone = true
		it := item{fn: first}
		if first == nil {
			it = q.batch.popFront()
		}
		inBlock = inOwnBlock
		if it.x == nil {
			it.fn() // runBlock's hot path: the queue is plain (submitPlain made it holdFirst)
		} else {
			q.runBlock(it, g)
		}
		inBlock = notInBlock
		lone = false
		if c != holdCount && q.hold.CompareAndSwap(w, c+holdCountOne) { // counted and given back
			if q.flags.Load()&flagAsyncBoost != 0 { // after the count, as finished
				exec.asyncProgress(q)
			}
			if f := loneReleasedHook.Load(); f != nil {
				(*f)(q)
			}
			return
		}
		// Something came meanwhile, or the count is full: the count and this block go into
		// acc and done, under the lock (the word first: executed, read without the lock, is
		// low meanwhile, never high), and the drainer holds the queue as any other.
		q.mu.Lock()
		n := loneCount(q.hold.Load()) + 1
		q.hold.And(holdBits &^ (holdLone | holdQueued))
		q.acc += n
		q.done.Add(n)
		q.owner = g
		q.counted = true // the block holdFirst says of is in acc
		// After the count, as finished.
		if q.flags.Load()&flagAsyncBoost != 0 {
			q.mu.Unlock()
			exec.asyncProgress(q)
			q.mu.Lock()
		}
		if q.closed && q.live() == 0 {
			q.fireCloseLocked() // as finished does
		}
		ran, total = 1, 1
	} else {
		q.mu.Lock()
		q.owner = g
		q.countFirstLocked()
	}
	// What runBlock looks at for a plain block, fixed at the queue's creation: read once, and
	// not by a lone drainer (its queue is plain), which touches nothing more of the
	// drainer's part than it needs.
	lean := q.limit == 0 && q.cfg == nil
	waited := false    // the drainer slept for a batch (sleepForBatch) just before it locked
	flood := false     // the last batch taken had floodBatch blocks or more
	var tm *time.Timer // sleepForBatch's, made at its first sleep
	// What sleepForBatch waits on, made at this drain's first flood: by this goroutine, so of
	// its synctest bubble if it has one. A channel kept with the queue from one drain to the
	// next would be the bubble's of whichever drainer made it, and a drainer or submitter
	// outside that bubble touching it is a fatal error (TestAQueueFloodedInABubbleAndThenOutside).
	var wake chan struct{}
	for {
		if !q.runnableLocked() {
			q.releaseSerialLocked()
			return
		}
		if q.batch.n == 0 {
			switch {
			case q.items.n == 0:
				if total < 2 || waited || !q.lingerLocked() {
					q.releaseSerialLocked()
					return
				}
			case q.items.n < batchSize && total >= batchSize && !waited:
				// A stream that this drainer outpaces: let a batch build up before taking
				// it, rather than meeting the submitters on the lock for every few blocks.
				q.pauseLocked()
				if !q.runnableLocked() {
					continue
				}
			}
			flood = q.plain && q.items.n >= floodBatch
			if flood {
				if wake == nil {
					wake = make(chan struct{}, 1)
				}
				// Submitters use it only while holdHungry is set, which only this drainer
				// sets, after this.
				q.extLocked().wake = wake
			}
			q.items, q.batch = q.batch, q.items
		}
		waited = false
		// The target, read here with the submitters' lines in hand, for the checks between
		// blocks: reading it there would take a line from the submitters every 32 blocks.
		on := q.target.Load()
		q.mu.Unlock()
		counted = 0
		for {
			for q.batch.n > 0 && ran < batchSize {
				if q.flags.Load()&flagStopped != 0 {
					break
				}
				if lean {
					if fn, ok := q.batch.tryPopFunc(); ok {
						// runBlock's hot path, written out: a plain block.
						ran++
						total++
						inBlock = inOwnBlock
						fn()
						inBlock = notInBlock
						counted++
						continue
					}
				}
				it := q.batch.popFront()
				if w := it.waiter(); w != nil {
					q.finished(counted)
					counted = 0
					q.mu.Lock()
					if w.claim() {
						q.putBackLocked()
						q.owner = w.g // active stays 1: the Sync caller holds the queue now
						q.mu.Unlock()
						w.wake()
						return
					}
					q.mu.Unlock()
					continue // the caller gave up
				}
				ran++
				total++
				inBlock = stateOf(it)
				if q.runBlock(it, g) {
					counted++
				}
				inBlock = notInBlock
			}
			if ran < batchSize || q.batch.n == 0 || q.flags.Load()&flagStopped != 0 {
				break
			}
			// A full batch ran and more is in hand: yield only if others wait for the target.
			if on.contended() {
				q.finished(counted)
				q.mu.Lock()
				q.owner = 0
				q.mu.Unlock()
				q.target.Load().submitChild(q) // the queue keeps its drainer slot and batch
				return
			}
			ran = 0
		}
		q.finished(counted)
		if flood && q.batch.n == 0 && q.flags.Load()&flagStopped == 0 && !on.contended() {
			// A flood: sleep until a batch waits rather than take the lock now (meeting the
			// submitters on it) or spin beside them.
			q.sleepForBatch(g, wake, &tm)
			q.mu.Lock()
			q.hold.And(^holdHungry)
			waited = true
			ran = 0
			continue
		}
		q.mu.Lock()
		if ran >= batchSize && q.items.n > 0 && q.runnableLocked() && q.target.Load().contended() {
			q.owner = 0
			q.mu.Unlock()
			q.target.Load().submitChild(q)
			return
		}
		if ran >= batchSize {
			ran = 0
		}
	}
}

// loneReleasedHook, when set (by tests), is called by a lone drainer right after it gave its
// queue back, before it returns: whoever takes the queue meanwhile must see the block counted.
var loneReleasedHook atomic.Pointer[func(*Queue)]

// endLoneLocked makes the lone drainer g, whose block ended its goroutine (runtime.Goexit),
// an ordinary one: the owner under the lock, its block counted in acc (it counts in done as
// it finishes), the word's lone bits cleared. A block queued meanwhile marked holdQueued,
// which an ordinary holder does not need: it looks at the pending blocks under the lock.
func (q *Queue) endLoneLocked(g uintptr) {
	q.hold.And((1<<holdShift - 1) &^ (holdLone | holdQueued))
	q.owner = g
	q.countFirstLocked()
}

// blockState says what a drainer is running, for the repair after a runtime.Goexit.
type blockState uint8

const (
	notInBlock   blockState = iota
	inChildDrain            // the drain of a queue targeting this one (not counted as a block)
	inOwnBlock              // an accepted block of the queue
)

func stateOf(it item) blockState {
	if it.child != nil {
		return inChildDrain
	}
	return inOwnBlock
}

// serialDrainerExited is called as the goroutine draining q ends inside a block with
// runtime.Goexit (t.FailNow, require.* in a test): the block counts as finished, as a handled
// panic does, and q goes on from its next block with a new drain. The drains further up the
// goroutine's stack do the same for their queues, and the worker is replaced (executor.work).
// A panic that unwinds through here crashes the program anyway; this changes nothing for it.
func (q *Queue) serialDrainerExited(counted uint64, block bool) {
	if block {
		counted++
	}
	q.finished(counted)
	q.mu.Lock()
	q.putBackLocked()
	start := q.serialReleaseLocked()
	q.mu.Unlock()
	if start {
		q.startDrainers(1)
	}
}

// concurrentDrainerExited is serialDrainerExited for a drainer of a concurrent queue.
func (q *Queue) concurrentDrainerExited(g uintptr, block, excl bool) {
	if block {
		q.finished(1)
	}
	q.mu.Lock()
	q.inflight--
	if excl {
		q.excl, q.owner = false, 0
	} else {
		q.removeHolderLocked(g)
	}
	q.active--
	n := q.wantLocked()
	q.active += n
	q.mu.Unlock()
	q.startDrainers(n)
}

// putBackLocked returns the drainer's private batch to the front of the pending blocks, for
// whoever holds the queue next.
func (q *Queue) putBackLocked() {
	for q.batch.n > 0 {
		q.items.pushFrontOne(q.batch.popBack())
	}
}

func (q *Queue) releaseSerialLocked() {
	q.putBackLocked()
	start := q.serialReleaseLocked() // only if blocks came while it looked; not so far
	q.mu.Unlock()
	if start {
		q.startDrainers(1)
	}
}

// sleepForBatch is called by the drainer of a flooded plain serial queue whose batch ran
// out: it marks the hold word holdHungry and parks until a submitter, under q.mu, sees the
// mark with floodBatch blocks queued (or a slow-path push: a Sync caller, a child's drain)
// and wakes it (wakeDrainerLocked), or until floodWait has passed. The caller then takes
// the lock, clears the mark and takes what is there.
//
// Asleep, the drainer counts as blocked (as a waiting Sync caller does), so that work coming
// to its root meanwhile gets a worker instead of waiting out the sleep. ch is the drain's
// own channel (see drainSerial's wake).
func (q *Queue) sleepForBatch(g uintptr, ch chan struct{}, tm **time.Timer) {
	q.hold.Or(holdHungry)
	d := time.Duration(floodWaitTest.Load())
	if d == 0 {
		d = floodWait
	}
	if *tm == nil {
		*tm = time.NewTimer(d)
	} else {
		(*tm).Reset(d)
	}
	p := exec.blockEnter(g)
	select {
	case <-ch:
	case <-(*tm).C:
	}
	(*tm).Stop()
	if p != nil {
		exec.blockExit(p)
	}
}

// floodWaitTest, when not zero, is floodWait in nanoseconds (tests).
var floodWaitTest atomic.Int64

// floodBatch is the batch a flooded queue's drainer sleeps for, floodWait how long at most.
const (
	floodBatch int32 = 512
	floodWait        = 50 * time.Microsecond
)

// wakeDrainerLocked is called under q.mu by a submitter that saw holdHungry in the word h: it
// wakes the sleeping drainer once min blocks wait and the queue may run.
func (q *Queue) wakeDrainerLocked(h uint64, min int32) {
	if h&holdStopped != 0 || q.items.n < min {
		return
	}
	q.hold.And(^holdHungry)
	select {
	case q.ext.wake <- struct{}{}:
	default:
	}
}

// lingerRounds is how many times the drainer of a streaming serial queue yields
// (runtime.Gosched) before it looks for more blocks, and lingerTries how many such looks it
// takes before it gives the queue back. Not touching the queue while it waits keeps the
// submitters' cache lines theirs; looking after a while finds a batch worth taking.
const (
	lingerRounds = 4
	lingerTries  = 2
)

// pauseLocked lets the submitters of a streaming queue work undisturbed for a moment, unless
// other queues wait for the target. q.mu is held on entry and exit.
func (q *Queue) pauseLocked() {
	if q.target.Load().contended() {
		return
	}
	q.mu.Unlock()
	for i := 0; i < lingerRounds; i++ {
		runtime.Gosched()
	}
	q.mu.Lock()
}

// lingerLocked is called by the drainer of a serial queue that ran more than one block and
// found the queue empty: blocks are arriving while it drains. It waits a little for more,
// so that a stream of Asyncs is drained in batches instead of paying a hand-off to the target
// for each block. q.mu is held on entry and exit; it reports whether work came.
func (q *Queue) lingerLocked() bool {
	if q.target.Load().contended() {
		return false
	}
	for try := 0; try < lingerTries; try++ {
		q.mu.Unlock()
		for i := 0; i < lingerRounds; i++ {
			runtime.Gosched()
		}
		q.mu.Lock()
		if q.items.n > 0 || !q.runnableLocked() {
			return q.items.n > 0 && q.runnableLocked()
		}
	}
	return false
}

// drainConcurrent runs q's blocks one at a time as they come, alongside up to width-1 other
// drainers. A barrier waits until nothing is in flight, then runs with the queue to itself.
func (q *Queue) drainConcurrent(g uintptr) {
	var inBlock blockState // as in drainSerial
	var inExcl bool
	defer func() {
		if inBlock != notInBlock {
			q.concurrentDrainerExited(g, inBlock == inOwnBlock, inExcl)
		}
	}()
	budget := batchSize
	q.mu.Lock()
	for q.items.n > 0 && q.runnableLocked() && !q.excl {
		excl := q.items.peek().exclusive()
		if excl && q.inflight > 0 {
			break // the last block in flight picks the barrier up
		}
		it := q.items.popFront()
		if w := it.waiter(); w != nil {
			if !w.claim() {
				continue
			}
			// The Sync caller takes this drainer's slot.
			q.inflight++
			if excl {
				q.excl, q.owner = true, w.g
			} else {
				q.addHolderLocked(w.g)
			}
			n := q.wantLocked()
			q.active += n
			q.mu.Unlock()
			w.wake()
			q.startDrainers(n)
			return
		}
		q.inflight++
		if excl {
			q.excl, q.owner = true, g
		} else {
			q.addHolderLocked(g)
		}
		q.mu.Unlock()
		inBlock, inExcl = stateOf(it), excl
		if q.runBlock(it, g) {
			q.finished(1)
		}
		inBlock = notInBlock
		q.mu.Lock()
		q.inflight--
		if excl {
			q.excl, q.owner = false, 0
			// Drainers left while the barrier ran; bring them back.
			if n := q.wantLocked(); n > 0 {
				q.active += n
				q.mu.Unlock()
				q.startDrainers(n)
				q.mu.Lock()
			}
		} else {
			q.removeHolderLocked(g)
		}
		if budget--; budget == 0 && q.items.n > 0 {
			if !q.target.Load().contended() {
				budget = batchSize
				continue
			}
			q.mu.Unlock()
			q.target.Load().submitChild(q) // yield; keep the slot
			return
		}
	}
	q.active--
	if n := q.wantLocked(); n > 0 { // a barrier may now be startable
		q.active += n
		q.mu.Unlock()
		q.startDrainers(n)
		return
	}
	q.mu.Unlock()
}

// contended reports whether other work waits for q or for a queue up its chain, so a queue
// draining on q should yield. It is called only by the drain of a queue that targets q, which
// runs inside the drains of q and of every serial queue up the chain: so it may read their
// drainers' private batches, where a sibling's drain waits once the drainer has taken it.
func (q *Queue) contended() bool {
	for x := q; ; x = x.target.Load() {
		if x.kind == rootKind {
			return exec.rootContended()
		}
		x.mu.Lock()
		waiting := x.items.n > 0 || x.batch.n > 0
		x.mu.Unlock()
		if waiting {
			return true
		}
	}
}

func (q *Queue) addHolderLocked(g uintptr) {
	x := q.extLocked()
	x.holders = append(x.holders, g)
}

func (q *Queue) removeHolderLocked(g uintptr) {
	h := q.ext.holders
	for i, v := range h {
		if v == g {
			last := len(h) - 1
			h[i] = h[last]
			q.ext.holders = h[:last]
			return
		}
	}
}

// holdsLocked reports whether goroutine g is running q: alone, or in one of its slots.
func (q *Queue) holdsLocked(g uintptr) bool {
	if q.ownerLocked() == g {
		return true
	}
	if q.ext != nil {
		for _, v := range q.ext.holders {
			if v == g {
				return true
			}
		}
	}
	return false
}
