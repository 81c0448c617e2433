package queue

import "github.com/dispatchkit/dispatchkit/internal/goid"

// Priority inversion: work of a high QoS that waits behind a queue whose drain waits at a
// lower QoS would wait behind all the lower-QoS work. As GCD does, it raises (overrides) the
// QoS of the queue that carries the chain to the roots (the top): the top's waiting drain
// moves to the higher class at once, and its later drains go in at that class, until the
// work that asked for it is past. Three kinds of work ask:
//
//   - a Sync caller waiting for the queue, until it gets the queue;
//   - an Async block submitted by a block that runs at a higher QoS, until the queue has
//     run it (GCD's asynchronous override);
//   - the drain of a queue of a higher QoS that targets the queue, until that drain starts.
//
// A goroutine outside the executor has no QoS of its own: its Asyncs raise nothing (its Sync
// calls count as Default). Overrides are kept per top queue in executor.overrides; the top's
// override field caches their highest class.

// overrideEntry is one piece of work that raised a top queue.
type overrideEntry struct {
	qos   QoS
	q     *Queue // an Async block's queue, whose done count ...
	until uint64 // ... reaches until once the block has run
	child *Queue // a higher-QoS queue whose drain waits in the chain
	sync  bool   // a Sync caller: ends at unboost
}

func (o *overrideEntry) over() bool {
	return o.q != nil && o.q.done.Load() >= o.until
}

// topOf is the queue of q's chain that targets a root.
func topOf(q *Queue) *Queue {
	for t := q.target.Load(); t != nil && t.kind != rootKind; t = q.target.Load() {
		q = t
	}
	return q
}

// callerQoS is the QoS of the calling goroutine for a Sync: that of the root whose item it
// runs, or Default for a goroutine outside the executor.
func callerQoS(g uintptr) QoS {
	if qos, ok := exec.workerQoS(g); ok {
		return qos
	}
	return Default
}

// workerQoS returns the QoS of the root item worker g runs; false if g runs none.
func (e *executor) workerQoS(g uintptr) (QoS, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.list {
		if w.g == g && w.root != nil {
			return w.root.qos, true
		}
	}
	return 0, false
}

// runningAbove reports whether a worker may be running work of a class above qos. It errs on
// the side of yes (a worker keeps its class until it runs another or exits).
func (e *executor) runningAbove(qos QoS) bool {
	for i := int(qos) + 1; i < numQoS; i++ {
		if e.running[i].Load() > 0 {
			return true
		}
	}
	return false
}

// raise records o against the top of q's chain and, if o's class is above the top's current
// one, moves the top's waiting drain up. It reports whether o was recorded (false when the
// chain already runs at o's class or above).
func (e *executor) raise(q *Queue, o *overrideEntry) bool {
	top := topOf(q)
	if q.kind == rootKind || o.qos <= top.target.Load().qos {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.mergeLocked(top, o) {
		e.overrides[top] = append(e.overrides[top], o)
		e.overrideN.Add(1)
	}
	if QoS(top.override) < o.qos {
		top.override = int8(o.qos)
		e.moveLocked(top, o.qos)
	}
	return true
}

// mergeLocked folds o into an entry of top for the same Async queue or child at the same
// class, so that a stream of submissions keeps one entry, not one per block.
func (e *executor) mergeLocked(top *Queue, o *overrideEntry) bool {
	if o.sync {
		return false
	}
	for _, x := range e.overrides[top] {
		if x.qos == o.qos && x.q == o.q && x.child == o.child && !x.sync {
			x.until = max(x.until, o.until)
			return true
		}
	}
	return false
}

// moveLocked moves top's drain, if one waits at a root below qos, to the root of qos. It
// leaves a tombstone where the drain was: workers skip it.
func (e *executor) moveLocked(top *Queue, qos QoS) {
	if top.slot < 0 || QoS(top.slot) >= qos {
		return // not waiting at a root now; its next drain goes in at qos
	}
	e.poolsLocked(func(p *pool) {
		d := &p.items[top.slot]
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
					c.items[i] = item{}
					p.items[qos].pushBack(item{child: top})
					p.n++
					e.queued.Add(1)
					top.slot = int8(qos)
					return
				}
			}
		}
	})
}

// refreshOverrideLocked drops top's overrides whose work is past and recomputes its class.
func (e *executor) refreshOverrideLocked(top *Queue) {
	list := e.overrides[top]
	keep := list[:0]
	var qos QoS
	for _, o := range list {
		if o.over() {
			e.overrideN.Add(-1)
			continue
		}
		keep = append(keep, o)
		qos = max(qos, o.qos)
	}
	clear(list[len(keep):])
	if len(keep) == 0 {
		delete(e.overrides, top)
	} else {
		e.overrides[top] = keep
	}
	top.override = int8(qos)
}

// removeLocked drops the overrides of top that match.
func (e *executor) removeLocked(top *Queue, match func(*overrideEntry) bool) {
	list := e.overrides[top]
	keep := list[:0]
	for _, o := range list {
		if match(o) {
			e.overrideN.Add(-1)
		} else {
			keep = append(keep, o)
		}
	}
	clear(list[len(keep):])
	e.overrides[top] = keep
	e.refreshOverrideLocked(top)
}

// boost raises q's chain for a Sync caller of class qos waiting for q. It returns what
// unboost needs, or nil if nothing was raised.
func (e *executor) boost(q *Queue, qos QoS) *overrideEntry {
	o := &overrideEntry{qos: qos, sync: true}
	if !e.raise(q, o) {
		return nil
	}
	return o
}

// unboost ends a Sync caller's override once it has the queue.
func (e *executor) unboost(q *Queue, o *overrideEntry) {
	e.mu.Lock()
	e.removeLocked(topOf(q), func(x *overrideEntry) bool { return x == o })
	e.mu.Unlock()
}

// inheritQoS is called after q accepted a block. If the submitter is a block running at a
// class above q's chain, q's chain is raised to that class until q has run the block.
func (q *Queue) inheritQoS() {
	if q.kind == rootKind {
		return
	}
	base := topOf(q).target.Load().qos
	if !exec.runningAbove(base) {
		return // the common case: a few atomic loads
	}
	qos, ok := exec.workerQoS(goid.G())
	if !ok || qos <= base {
		return
	}
	q.mu.Lock()
	until := q.acc // this block and the ones before it
	q.mu.Unlock()
	exec.raise(q, &overrideEntry{qos: qos, q: q, until: until})
}

// inheritChildQoS is called when q (not a root) queues a drain of child, whose QoS is above
// q's own: q's chain is raised to child's class until the drain starts.
func (q *Queue) inheritChildQoS(child *Queue) {
	exec.raise(q, &overrideEntry{qos: child.qos, child: child})
}

// drained forgets the overrides of top that are past once a drain of top returns, so that a
// queue that goes idle is not kept in executor.overrides; called only while some exist.
func (e *executor) drained(top *Queue) {
	e.mu.Lock()
	if len(e.overrides[top]) > 0 {
		e.refreshOverrideLocked(top)
	}
	e.mu.Unlock()
}

// childStarted ends the overrides a drain of child asked for; called as the drain starts,
// only while some override exists.
func (e *executor) childStarted(child *Queue) {
	top := topOf(child)
	if top == child {
		return
	}
	e.mu.Lock()
	if len(e.overrides[top]) > 0 {
		e.removeLocked(top, func(x *overrideEntry) bool { return x.child == child })
	}
	e.mu.Unlock()
}
