package queue

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/internal/goid"
)

// maxWorkers caps the goroutines a pool runs at once, counting the extra ones it starts
// while workers are blocked in Sync.
const maxWorkers = 4096

// executor runs the Global root queues on worker goroutines. Workers exist only while there
// is work: one is started when a root gets an item and fewer than GOMAXPROCS are running, and
// it exits when every root is empty. A worker always takes the highest-QoS item first.
//
// The roots' items and workers are kept in pools, one per testing/synctest bubble (see
// bubble.go): the goroutine that pushes an item decides its pool, and only that pool's
// workers, started by goroutines of the same bubble, run it. Outside tests there is one pool.
type executor struct {
	mu      sync.Mutex
	roots   [numQoS]*Queue
	main    pool             // the pool of goroutines outside any bubble
	bubbles map[uint64]*pool // pools of synctest bubbles, while they have work
	list    []*worker
	cpus    atomic.Int32 // GOMAXPROCS as last read; re-read whenever a worker starts
	queued  atomic.Int32 // items in all roots of all pools, for spinning workers to watch

	// running counts workers by the QoS of the root item they ran last, under mu; a worker
	// moves between counts only when its class changes. classes has bit i set while
	// running[i] > 0: it lets Async skip looking for its caller's QoS, with one load, when no
	// worker runs above the queue's class (see override.go). Every Async reads it: it gets a
	// cache line of its own, away from queued, which every push writes.
	_       [64]byte
	classes atomic.Uint32
	_       [60]byte
	running [numQoS]int32

	byG        sync.Map                    // goroutine -> *worker, for workerQoS without mu
	extraTotal uint64                      // workers ever lent by monitors
	overrides  map[*Queue][]*overrideEntry // by top queue, while their work is pending (override.go)
}

// pool is the roots' items and workers of one bubble, or of everything outside bubbles.
type pool struct {
	bubble  uint64 // 0: outside any bubble
	items   [numQoS]deque
	n       int32 // items in items
	workers int32 // running worker goroutines
	blocked int32 // of those, waiting in a Sync (they do not count against GOMAXPROCS)
	spinner bool  // a worker is briefly waiting for work before it exits
	refused uint32

	// The monitor lends workers when every worker is stuck (see monitor.go).
	extra   int32         // workers lent beyond GOMAXPROCS because the others were stuck
	started uint64        // root items taken by workers: progress, as the monitor sees it
	idle    chan struct{} // non-nil while a monitor runs; closed to make it exit
}

// spinRounds is how many times an idle worker yields (runtime.Gosched) while watching for new
// work before it exits. A few microseconds of it saves a goroutine start per burst; yielding
// rather than busy-waiting gives the core to any goroutine that has something to do.
const spinRounds = 16

type worker struct {
	g    uintptr
	p    *pool
	root *Queue       // the root whose item the worker runs now
	home *Queue       // the root that item belongs to: a drain moved up by an override is not root's
	qos  QoS          // the class counted in executor.running
	now  atomic.Int32 // root's QoS while it has one, else -1: read without e.mu (workerQoS)
}

var exec = newExecutor()

func newExecutor() *executor {
	e := &executor{bubbles: map[uint64]*pool{}, overrides: map[*Queue][]*overrideEntry{}}
	e.main = *newPool(0)
	for i := range e.roots {
		qos := QoS(i)
		label := "global." + qos.String()
		e.roots[i] = &Queue{label: label, kind: rootKind, lslot: labelSlot(label)}
		e.roots[i].qos.Store(int32(qos))
	}
	e.cpus.Store(int32(runtime.GOMAXPROCS(0)))
	return e
}

// Global returns the shared root concurrent queue of a QoS class. Its width is GOMAXPROCS,
// and all roots share one pool of that many workers, the higher classes served first (each
// testing/synctest bubble gets a pool of its own: see the package doc). Queues created
// without WithTarget run on Global(their QoS).
func Global(qos QoS) *Queue {
	if !qos.valid() {
		panic("queue: Global of an invalid QoS " + qos.String())
	}
	return exec.roots[qos]
}

// procs is GOMAXPROCS as last read. Reading it costs a lock in the runtime, so the hot paths
// use this copy, which is read again whenever a worker starts or exits and by Width.
func (e *executor) procs() int32 { return e.cpus.Load() }

func (e *executor) refreshProcs() { e.cpus.Store(int32(runtime.GOMAXPROCS(0))) }

// push adds an item to a root queue and starts a worker if one may run. The item goes to the
// pool of the calling goroutine: a worker's own, or the one of the caller's bubble.
func (e *executor) push(root *Queue, it item) {
	g := goid.G()
	e.mu.Lock()
	p := e.workerPoolLocked(g)
	if p == nil {
		e.mu.Unlock()
		b := currentBubble() // outside the lock: it may cost a stack trace in a bubble
		e.mu.Lock()
		p = e.poolLocked(b)
	}
	qos := root.QoS()
	if c := it.child; c != nil {
		qos = max(qos, QoS(c.override))
		c.slot = int8(qos)
	}
	p.items[qos].pushBack(it)
	p.n++
	e.queued.Add(1)
	if it.child == nil {
		root.acc++
	}
	// The spinning worker, if any, will take one item; start another for anything more.
	covered := p.spinner && p.n <= 1
	spawn := !covered && p.workers-p.blocked < e.capLocked(p) && p.workers < maxWorkers
	if !spawn && !covered && p.workers < maxWorkers {
		// Refused by the CPU cap: GOMAXPROCS may have grown since we last looked. Look again
		// now and then, not on every submission to a saturated executor.
		if p.refused++; p.refused%64 == 1 {
			e.refreshProcs()
			spawn = p.workers-p.blocked < e.capLocked(p)
		}
	}
	if spawn {
		p.workers++
		e.refreshProcs() // a goroutine start costs far more than this look
	}
	var idle chan struct{}
	if p.idle == nil {
		idle = make(chan struct{}) // made here, by a goroutine of the pool's bubble
		p.idle = idle
	}
	e.mu.Unlock()
	if idle != nil {
		go e.monitor(p, idle)
	}
	if spawn {
		go e.work(p)
	}
}

// workerPoolLocked returns the pool of worker g, or nil if g is not a worker.
func (e *executor) workerPoolLocked(g uintptr) *pool {
	for _, w := range e.list {
		if w.g == g {
			return w.p
		}
	}
	return nil
}

// poolLocked returns the pool of a bubble (0: outside any), making it if needed.
func (e *executor) poolLocked(bubble uint64) *pool {
	if bubble == 0 {
		return &e.main
	}
	p := e.bubbles[bubble]
	if p == nil {
		p = newPool(bubble)
		e.bubbles[bubble] = p
	}
	return p
}

// newPool returns an empty pool; its root deques keep their last chunk when they empty, so
// that a queue's drain going through a root does not take a chunk from the pool and give it
// back each time.
func newPool(bubble uint64) *pool {
	p := &pool{bubble: bubble}
	for i := range p.items {
		p.items[i].keep = true
	}
	return p
}

// pools calls fn for each pool; e.mu is held.
func (e *executor) poolsLocked(fn func(p *pool)) {
	fn(&e.main)
	for _, p := range e.bubbles {
		fn(p)
	}
}

// popLocked takes the next item of pool p, highest QoS first.
func (e *executor) popLocked(p *pool) (*Queue, item, bool) {
	for i := numQoS - 1; i >= 0; i-- {
		for p.items[i].n > 0 {
			p.n--
			e.queued.Add(-1)
			it := p.items[i].popFront()
			if it.fn == nil && it.child == nil && it.x == nil {
				continue // a drain moved to a higher QoS
			}
			p.started++
			if it.child != nil {
				it.child.slot = -1
			}
			return e.roots[i], it, true
		}
	}
	return nil, item{}, false
}

func (e *executor) work(p *pool) {
	w := &worker{g: goid.G(), p: p, qos: -1}
	// block is the root whose own block runs now; exited says a block ended the goroutine
	// with runtime.Goexit (the drains under it have repaired their queues by then).
	var block *Queue
	var prev any
	var had, on, exited bool
	defer func() {
		if exited {
			if block != nil {
				leaveRunning(w.g, prev, had, on)
				block.finished(1)
			}
			e.workerExited(w)
		}
	}()
	w.now.Store(-1)
	e.byG.Store(w.g, w)
	e.mu.Lock()
	e.list = append(e.list, w)
	var last *Queue // the root whose item ran last, while a drain's labels are still set
	for p.workers-p.blocked <= e.capLocked(p) {
		root, it, ok := e.popLocked(p)
		if !ok {
			if p.spinner {
				break
			}
			if last != nil {
				last.setLabels() // the wait is the root's time, not the last queue's
				last = nil
			}
			if !e.spinLocked(p) {
				break
			}
			continue
		}
		w.root, w.home = root, root
		if it.child != nil {
			w.home = it.child.target.Load()
		}
		w.now.Store(int32(root.QoS()))
		if w.qos != root.QoS() {
			e.setWorkerQoS(w, root.QoS())
		}
		e.mu.Unlock()
		exited = true
		if it.child == nil {
			root.setLabels()
			block = root
			prev, had, on = enterRunning(root, w.g)
		}
		if root.runBlock(it, w.g) {
			root.finished(1)
		} else {
			last = root
		}
		if block != nil {
			leaveRunning(w.g, prev, had, on)
			block = nil
		}
		exited = false
		e.mu.Lock()
		w.root, w.home = nil, nil
		w.now.Store(-1)
	}
	e.removeWorkerLocked(w)
	if p.workers == 0 && p.n == 0 {
		e.idleLocked(p)
	}
	e.mu.Unlock()
	e.refreshProcs()
}

// removeWorkerLocked takes w out of the list and the counts. Once it is out, the goroutine is
// no longer a worker: the runtime may reuse its identity (goid.G) for any goroutine.
func (e *executor) removeWorkerLocked(w *worker) {
	for i, v := range e.list {
		if v == w {
			e.list[i] = e.list[len(e.list)-1]
			e.list[len(e.list)-1] = nil
			e.list = e.list[:len(e.list)-1]
			break
		}
	}
	e.byG.Delete(w.g) // before the goroutine ends and its identity can be reused
	w.root = nil
	w.now.Store(-1)
	e.setWorkerQoS(w, -1)
	w.p.workers--
}

// workerExited is called as worker w's goroutine ends inside a block with runtime.Goexit:
// the goroutine stops being a worker and, if items wait, a new worker takes its place.
func (e *executor) workerExited(w *worker) {
	p := w.p
	e.mu.Lock()
	e.removeWorkerLocked(w)
	spawn := p.n > 0 && p.workers-p.blocked < e.capLocked(p) && p.workers < maxWorkers
	if spawn {
		p.workers++
	} else if p.workers == 0 && p.n == 0 {
		e.idleLocked(p)
	}
	e.mu.Unlock()
	if spawn {
		go e.work(p) // this goroutine is of p's bubble, so the new worker is too
	}
}

// setWorkerQoS moves w between the running counts; -1 takes it out. e.mu is held.
func (e *executor) setWorkerQoS(w *worker, qos QoS) {
	if w.qos >= 0 {
		if e.running[w.qos]--; e.running[w.qos] == 0 {
			e.classes.And(^(uint32(1) << w.qos))
		}
	}
	if qos >= 0 {
		if e.running[qos]++; e.running[qos] == 1 {
			e.classes.Or(uint32(1) << qos)
		}
	}
	w.qos = qos
}

// idleLocked is called when pool p has no worker and no item left: its monitor exits now,
// not at its next tick (inside a synctest bubble the tick might never come: time stops when
// the bubble's test function returns), and a bubble's pool is forgotten.
func (e *executor) idleLocked(p *pool) {
	if p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	p.extra = 0
	if p.bubble != 0 {
		delete(e.bubbles, p.bubble)
	}
}

// spinLocked waits a little for new work, as the pool's one spinning worker; e.mu is held on
// entry and exit. It reports whether work arrived.
func (e *executor) spinLocked(p *pool) bool {
	p.spinner = true
	e.mu.Unlock()
	for i := 0; i < spinRounds && e.queued.Load() == 0; i++ {
		runtime.Gosched()
	}
	e.mu.Lock()
	p.spinner = false
	return p.n > 0
}

// blockEnter tells the executor that goroutine g is about to wait in a Sync. If g is a
// worker, another worker may start in its place, so waiting for a queue can never use up the
// executor. It returns g's pool if g is a worker (which must then call blockExit), else nil.
func (e *executor) blockEnter(g uintptr) *pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.workerPoolLocked(g)
	if p == nil {
		return nil
	}
	p.blocked++
	if p.workers-p.blocked < e.capLocked(p) && p.workers < maxWorkers && p.n > 0 {
		p.workers++
		go e.work(p) // g is of p's bubble, so the new worker is too
	}
	return p
}

func (e *executor) blockExit(p *pool) {
	e.mu.Lock()
	p.blocked--
	e.mu.Unlock()
}

// runningOn reports whether goroutine g is a worker running an item of root: a block
// submitted to it, or the drain of a queue that targets it.
func (e *executor) runningOn(g uintptr, root *Queue) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.list {
		if w.g == g {
			return w.home == root
		}
	}
	return false
}

func (e *executor) rootLoad(root *Queue) (pending, running int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.list {
		if w.root == root {
			running++
		}
	}
	e.poolsLocked(func(p *pool) { pending += int(p.items[root.QoS()].n) })
	return pending, running
}
