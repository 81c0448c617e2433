package queue

// drain runs a batch of q's blocks on goroutine g. It is itself a block of q's target (or a
// root worker's item): this is how a queue's blocks run on its target.
func (q *Queue) drain(g uintptr) {
	if q.kind == serialKind {
		q.drainSerial(g)
	} else {
		q.drainConcurrent(g)
	}
}

// drainSerial takes up to batchSize blocks under one lock and runs them in order. It stops
// early for a Sync caller (which it hands the queue to), or when the queue is suspended; after
// a full batch with more to do it yields: it queues itself again at the back of its target.
func (q *Queue) drainSerial(g uintptr) {
	var batch [batchSize]item
	q.mu.Lock()
	for {
		if q.items.n == 0 || !q.runnableLocked() {
			q.active = 0
			q.owner = 0
			q.items.shrink()
			q.mu.Unlock()
			return
		}
		n := q.items.popInto(batch[:])
		q.owner = g
		q.mu.Unlock()
		stopped := false
		for i := 0; i < n; i++ {
			it := batch[i]
			batch[i] = item{}
			if w := it.waiter(); w != nil {
				q.mu.Lock()
				q.items.pushFront(batch[i+1 : n])
				clear(batch[i+1 : n])
				if w.claim() {
					q.owner = w.g // active stays 1: the Sync caller holds the queue now
					q.mu.Unlock()
					w.wake()
					return
				}
				stopped = true // the caller gave up; take a fresh batch
				break
			}
			if q.flags.Load()&flagStopped != 0 {
				q.mu.Lock()
				q.items.pushFront(batch[i:n])
				clear(batch[i:n])
				stopped = true
				break
			}
			q.runBlock(it, g)
		}
		if !stopped {
			q.mu.Lock()
		}
		if !stopped && q.items.n > 0 && q.runnableLocked() {
			q.owner = 0
			q.mu.Unlock()
			q.target.submitChild(q) // yield; the queue keeps its drainer slot
			return
		}
	}
}

// drainConcurrent runs q's blocks one at a time as they come, alongside up to width-1 other
// drainers. A barrier waits until nothing is in flight, then runs with the queue to itself.
func (q *Queue) drainConcurrent(g uintptr) {
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
		q.runBlock(it, g)
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
			q.mu.Unlock()
			q.target.submitChild(q) // yield; keep the slot
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
	if q.owner == g {
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
