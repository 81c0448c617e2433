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
//
// An entry leaves the table the moment its work is past, not at some later drain: the Sync
// caller removes its own; the drainer that starts a child's drain removes the child's (it was
// recorded before the drain was queued); the drainer that finishes an Async block removes the
// block's (recorded after the block was accepted, so the recorder checks whether it has run
// meanwhile, see raise). So the table holds only queues that have work pending, which are
// reachable anyway, and an idle queue is neither kept alive nor left raised. The drainers
// learn that an entry concerns them from a flag of the queue (flagAsyncBoost,
// flagChildBoost): the common path, with no override, pays one atomic load it already made.

// overrideEntry is one piece of work that raised a top queue.
type overrideEntry struct {
	qos   QoS
	top   *Queue // the queue it raised
	q     *Queue // an Async block's queue, whose done count ...
	until uint64 // ... reaches until once the block has run
	child *Queue // a higher-QoS queue whose drains wait in the chain ...
	n     int32  // ... this many of them
	sync  bool   // a Sync caller: ends at unboost
}

func (o *overrideEntry) over() bool {
	return o.q != nil && o.q.executed() >= o.until
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

// workerQoS returns the QoS of the root item worker g runs; false if g runs none. g is the
// caller, alive, so its entry (if it is a worker) is its own. It takes no lock: every Async
// asks while some worker runs above the queue's class.
func (e *executor) workerQoS(g uintptr) (QoS, bool) {
	v, ok := e.byG.Load(g)
	if !ok {
		return 0, false
	}
	if qos := v.(*worker).now.Load(); qos >= 0 {
		return QoS(qos), true
	}
	return 0, false
}

// runningAbove reports whether a worker may be running work of a class above qos. It errs on
// the side of yes (a worker keeps its class until it runs another or exits).
func (e *executor) runningAbove(qos QoS) bool {
	return e.classes.Load()>>(qos+1) != 0
}

// raise records o against the top of q's chain and, if o's class is above the top's current
// one, moves the top's waiting drain up. It reports whether o was recorded (false when the
// chain already runs at o's class or above, or o's Async block has already run).
func (e *executor) raise(q *Queue, o *overrideEntry) bool {
	top := topOf(q)
	if q.kind == rootKind || o.qos <= top.target.Load().QoS() {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.q != nil {
		// The block was accepted before this: it may have run. The flag first, then the
		// count; its drainer counts first, then looks at the flag (finished). Whichever comes
		// second sees the other: either this finds the block run, or the drainer comes here
		// to remove the entry (asyncProgress, after this unlocks).
		o.q.flags.Or(flagAsyncBoost)
		if o.over() {
			e.settleFlagsLocked(o.q, nil)
			return false
		}
	}
	if o.child != nil {
		o.child.flags.Or(flagChildBoost) // before the drain is queued (see submitChild)
		o.n = 1
	}
	o.top = top
	if !e.mergeLocked(top, o) {
		e.overrides[top] = append(e.overrides[top], o)
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
			x.n += o.n
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
		if p.items[top.slot].tombstoneChild(top) {
			p.items[qos].pushBack(item{child: top})
			p.classes.Or(1 << qos)
			p.n++
			e.queued.Add(1)
			top.slot = int8(qos)
		}
	})
}

// removeLocked drops the entries of top for which drop says so, and recomputes top's class;
// with no top given (nil), it looks through every top (a chain changed by SetTarget since).
func (e *executor) removeLocked(top *Queue, drop func(*overrideEntry) bool) {
	if top == nil {
		for t := range e.overrides {
			e.removeLocked(t, drop)
		}
		return
	}
	list, ok := e.overrides[top]
	if !ok {
		return
	}
	keep := list[:0]
	var qos QoS
	for _, o := range list {
		if !drop(o) {
			keep = append(keep, o)
			qos = max(qos, o.qos)
		}
	}
	clear(list[len(keep):])
	if len(keep) == 0 {
		delete(e.overrides, top) // the map holds no queue without pending work
	} else {
		e.overrides[top] = keep
	}
	top.override = int8(qos)
}

// settleFlagsLocked clears the flags of q (an Async queue) and child whose entries are gone.
func (e *executor) settleFlagsLocked(q, child *Queue) {
	asyncLeft, childLeft := false, false
	for _, list := range e.overrides {
		for _, o := range list {
			asyncLeft = asyncLeft || (q != nil && o.q == q)
			childLeft = childLeft || (child != nil && o.child == child)
		}
	}
	if q != nil && !asyncLeft {
		q.flags.And(^flagAsyncBoost)
	}
	if child != nil && !childLeft {
		child.flags.And(^flagChildBoost)
	}
}

// findTop returns the top under which q's entries are: its chain's top, or nil (look
// everywhere) if that has none of them.
func (e *executor) findTopLocked(q *Queue, has func(*overrideEntry) bool) *Queue {
	top := topOf(q)
	for _, o := range e.overrides[top] {
		if has(o) {
			return top
		}
	}
	return nil
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
func (e *executor) unboost(o *overrideEntry) {
	e.mu.Lock()
	e.removeLocked(o.top, func(x *overrideEntry) bool { return x == o })
	e.mu.Unlock()
}

// inheritQoS is called after q accepted a block. If the submitter is a block running at a
// class above q's chain, q's chain is raised to that class until q has run the block.
func (q *Queue) inheritQoS() {
	if q.kind == rootKind {
		return
	}
	base := topOf(q).target.Load().QoS()
	if !exec.runningAbove(base) {
		return // the common case: a few atomic loads
	}
	qos, ok := exec.workerQoS(goid.G())
	if !ok || qos <= base {
		return
	}
	q.mu.Lock()
	until := q.accepted() // this block and the ones before it
	q.mu.Unlock()
	exec.raise(q, &overrideEntry{qos: qos, q: q, until: until})
}

// inheritChildQoS is called when q (not a root) is about to queue a drain of child, whose
// QoS is above q's own: q's chain is raised to child's class until the drain starts. It is
// recorded before the drain is queued, so that the drainer that starts it finds it.
func (q *Queue) inheritChildQoS(child *Queue) {
	exec.raise(q, &overrideEntry{qos: child.QoS(), child: child})
}

// asyncProgress is called by a drainer that finished blocks of q while q has Async
// overrides (flagAsyncBoost): it removes those whose block has run.
func (e *executor) asyncProgress(q *Queue) {
	e.mu.Lock()
	mine := func(o *overrideEntry) bool { return o.q == q }
	e.removeLocked(e.findTopLocked(q, mine), func(o *overrideEntry) bool { return mine(o) && o.over() })
	e.settleFlagsLocked(q, nil)
	e.mu.Unlock()
}

// childStarted is called as a drain of child starts while child has overrides of its drains
// (flagChildBoost): it ends the override of one of them.
func (e *executor) childStarted(child *Queue) {
	e.mu.Lock()
	mine := func(o *overrideEntry) bool { return o.child == child }
	done := false // one drain started: one entry's count down, in whichever top has it
	e.removeLocked(e.findTopLocked(child, mine), func(o *overrideEntry) bool {
		if done || !mine(o) {
			return false
		}
		done = true
		o.n--
		return o.n <= 0
	})
	e.settleFlagsLocked(nil, child)
	e.mu.Unlock()
}
