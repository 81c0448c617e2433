package queue

// Priority inversion: a Sync caller of a high QoS waiting for a queue whose drain waits at a
// lower QoS would wait behind all the lower-QoS work. As GCD does, it raises (overrides) the
// queue's QoS: the queue's waiting drain moves to the higher class, and the override ends
// when the caller gets the queue.

// callerQoS is the QoS of the calling goroutine: that of the root whose item it runs, or
// Default for a goroutine outside the executor.
func callerQoS(g uintptr) QoS {
	e := exec
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.list {
		if w.g == g && w.root != nil {
			return w.root.qos
		}
	}
	return Default
}

// boost raises the queue that carries q's chain to the roots to at least qos, moving its
// waiting drain to that class. It reports whether it changed anything.
func (e *executor) boost(q *Queue, qos QoS) bool {
	top := q
	for top.target != nil && top.target.kind != rootKind {
		top = top.target
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if QoS(top.override) >= qos || top.target.qos >= qos {
		return false
	}
	top.override = int8(qos)
	if top.slot < 0 || QoS(top.slot) >= qos {
		return true // not waiting at a root now; its next drain goes in at qos
	}
	d := &e.items[top.slot]
	for c := d.head; c != nil; c = c.next {
		start, end := 0, chunkSize
		if c == d.head {
			start = d.hi
		}
		if c == d.tail {
			end = d.ti
		}
		for i := start; i < end; i++ {
			if c.items[i].child == top {
				c.items[i] = item{} // a tombstone: workers skip it
				e.items[qos].pushBack(item{child: top})
				e.queued.Add(1)
				top.slot = int8(qos)
				return true
			}
		}
	}
	return true
}

// unboost ends an override once the waiter that asked for it has the queue.
func (e *executor) unboost(q *Queue) {
	top := q
	for top.target != nil && top.target.kind != rootKind {
		top = top.target
	}
	e.mu.Lock()
	top.override = 0
	e.mu.Unlock()
}
