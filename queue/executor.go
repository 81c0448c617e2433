package queue

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

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
//
// Its worker counts change under e.mu; they are atomics so that a worker can hand itself a
// drain (worker.next) and take it back without the lock, deciding from them alone.
type pool struct {
	bubble  uint64 // 0: outside any bubble
	items   [numQoS]deque
	n       int32         // items in items (e.queued counts them without the lock)
	workers atomic.Int32  // running worker goroutines
	blocked atomic.Int32  // of those, waiting in a Sync (they do not count against GOMAXPROCS)
	spinner atomic.Bool   // a worker is briefly waiting for work before it exits
	classes atomic.Uint32 // bit i set while items[i] holds items: a handed drain checks for higher classes
	refused uint32

	// The monitor lends workers when every worker is stuck (see monitor.go).
	extra   atomic.Int32  // workers lent beyond GOMAXPROCS because the others were stuck
	started uint64        // root items taken by workers from the roots: progress, as the monitor sees it
	idle    chan struct{} // non-nil while a monitor runs; closed to make it exit
}

// spinRounds is how many times an idle worker yields (runtime.Gosched) while watching for new
// work before it exits. A few microseconds of it saves a goroutine start per burst; yielding
// rather than busy-waiting gives the core to any goroutine that has something to do.
const spinRounds = 16

type worker struct {
	g       uintptr
	p       *pool
	root    *Queue       // the root whose item the worker runs now, under e.mu (a handed item's is the same)
	home    uintptr      // the root that item belongs to (a drain moved up by an override is not root's): read by the worker alone
	qos     QoS          // the class counted in executor.running
	now     atomic.Int32 // root's QoS while it has one, else -1: read without e.mu (workerQoS)
	slotted bool         // registered in workerTable
	cur     uintptr      // the queue whose drain the worker runs as its root item (its own yields are no hand-off)
	direct  int          // handed items taken in a row while others waited in the roots
	running *Queue       // the innermost queue whose blocks the worker runs, while specifics are used (specific.go)

	// local holds the drains of queues that the worker's own blocks made runnable (Go's
	// runnext, as a small ring): the worker runs them as soon as its block returns, with no
	// lock, no goroutine woken and no other core touching them, unless work of the pool of
	// their class or above waits in the roots by then (see takeHanded). While they wait there,
	// others may take them all to their roots under e.mu (a spinner before it gives up, the
	// monitor, the worker's own Sync): see localRing.
	local localRing
}

// maxDirect is how many handed drains in a row a worker may run while items of the same
// class wait in the roots (as Go's runnext shares its time slice): a chain of queues passing
// work on (starfish, a pipeline) then costs no lock per hop, and what waits still comes after
// at most this many.
const maxDirect = 16

// localSize is how many handed drains a worker keeps (a power of two); one more goes to its
// root under e.mu.
const localSize = 32

// localRing is a worker's handed drains. Its word packs the index of the next one to run
// (head, low 16 bits), of the next free entry (tail, the 16 bits above) and stealBit. Only
// the worker adds entries and takes them one at a time, each with one CAS of the word, so
// the entries between head and tail are read by the worker alone; another goroutine, under
// e.mu (so one at a time), takes them all: it sets stealBit, which makes the worker's CAS
// fail, reads and clears the entries, and stores the word empty. The worker writes an entry
// before its CAS publishes it, at tail, outside what a taker reads.
//
// An entry is the queue whose drain it is, and the block that made an idle plain serial
// queue runnable if the submitter handed it with the drain (Queue.submitPlain): the drain
// runs it from here, so that the hop touches neither the queue's batch nor its cache line.
// Every entry is of one root, root, which the worker sets under e.mu whenever it starts on an
// item of a root (work), when the ring is empty or already of that root.
type localRing struct {
	word    atomic.Uint64
	root    *Queue // the root of the entries; written by the worker under e.mu
	entries [localSize]localEntry
}

type localEntry struct {
	q     *Queue
	first func() // nil, or the first block of q, in neither its batch nor its items
}

const stealBit = 1 << 32

func ringWord(head, tail uint16) uint64 { return uint64(head) | uint64(tail)<<16 }

func ringIdx(x uint64) (head, tail uint16) { return uint16(x), uint16(x >> 16) }

// put adds the drain of q, a queue on r.root, with q's first block if first is not nil; the
// ring's worker calls it. It reports false if the ring is full or being taken.
func (r *localRing) put(q *Queue, first func()) bool {
	for {
		x := r.word.Load()
		h, t := ringIdx(x)
		if x&stealBit != 0 || t-h >= localSize {
			return false
		}
		e := &r.entries[t%localSize]
		e.q, e.first = q, first
		if r.word.CompareAndSwap(x, ringWord(h, t+1)) {
			return true
		}
		*e = localEntry{} // taken meanwhile: look again
	}
}

// peek returns the root of the entries, nil if there are none; e.mu is held.
func (r *localRing) peek() *Queue {
	x := r.word.Load()
	if h, t := ringIdx(x); h != t {
		return r.root
	}
	return nil
}

// next returns the ring's word and whether it holds an entry the worker may take (take);
// the ring's worker calls it.
func (r *localRing) next() (uint64, bool) {
	x := r.word.Load()
	h, t := ringIdx(x)
	return x, x&stealBit == 0 && h != t
}

// take takes the next entry, which next saw in word x, unless a taker took it meanwhile.
// The entry is read only once the CAS made it the worker's: a taker may be clearing it.
func (r *localRing) take(x uint64) (localEntry, bool) {
	h, t := ringIdx(x)
	if !r.word.CompareAndSwap(x, ringWord(h+1, t)) {
		return localEntry{}, false
	}
	e := &r.entries[h%localSize]
	got := *e
	*e = localEntry{}
	return got, true
}

// size is how many entries the ring holds.
func (r *localRing) size() int32 {
	h, t := ringIdx(r.word.Load())
	return int32(t - h)
}

// takeAll hands every entry's drain to fn with its root and empties the ring; e.mu is held
// (any goroutine). A first block goes to its queue's batch, where a drain from the root finds
// it: nobody else touches the batch of a queue whose drain has not started.
func (r *localRing) takeAll(fn func(root *Queue, it item)) {
	var x uint64
	for {
		x = r.word.Load()
		if h, t := ringIdx(x); h == t {
			return
		}
		if r.word.CompareAndSwap(x, x|stealBit) {
			break
		}
	}
	h, t := ringIdx(x)
	for i := h; i != t; i++ {
		e := &r.entries[i%localSize]
		q, first := e.q, e.first
		*e = localEntry{}
		if first != nil {
			q.batch.pushBack(item{fn: first})
		}
		fn(r.root, item{child: q})
	}
	r.word.Store(ringWord(t, t))
}

// workerTable finds the worker running on a goroutine without a lock: one slot per hash of
// the goroutine, taken by the first worker that hashes there. A worker that finds its slot
// taken is not listed, and its pushes take the slow path (which still finds its pool).
var workerTable [256]atomic.Pointer[worker]

// addr is q's address, for a worker's fields that only compare queues (home, cur): they are
// written for every item a worker runs, and a plain word costs no write barrier while the GC
// marks. A queue compared so is alive while the worker runs its item.
func addr(q *Queue) uintptr { return uintptr(unsafe.Pointer(q)) }

func workerSlot(g uintptr) *atomic.Pointer[worker] {
	return &workerTable[(uint64(g)*0x9E3779B97F4A7C15)>>56]
}

// workerOf returns the worker running on goroutine g (the caller), or nil.
func workerOf(g uintptr) *worker {
	if w := workerSlot(g).Load(); w != nil && w.g == g {
		return w
	}
	return nil
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
// pool of the calling goroutine: a worker's own, or the one of the caller's bubble. A worker
// whose block made a queue runnable keeps that queue's drain for itself (hand).
func (e *executor) push(root *Queue, it item) {
	g := goid.G()
	w := workerOf(g)
	if w != nil && it.child != nil && addr(it.child) != w.cur && e.hand(w, root, it.child, nil) {
		return
	}
	e.mu.Lock()
	var p *pool
	if w != nil {
		p = w.p // what w was handed stays in its ring: drains of other queues, no order among them
	} else {
		// Not a worker (or one missing from workerTable, whose bubble is its pool's).
		e.mu.Unlock()
		b := currentBubble() // outside the lock: it may cost a stack trace in a bubble
		e.mu.Lock()
		p = e.poolLocked(b)
	}
	e.pushLocked(p, root, it)
	// The spinning worker, if any, will take one item; start another for anything more.
	covered := p.spinner.Load() && p.n <= 1
	spawn := !covered && p.workers.Load()-p.blocked.Load() < e.capLocked(p) && p.workers.Load() < maxWorkers
	if !spawn && !covered && p.workers.Load() < maxWorkers {
		// Refused by the CPU cap: GOMAXPROCS may have grown since we last looked. Look again
		// now and then, not on every submission to a saturated executor.
		if p.refused++; p.refused%64 == 1 {
			e.refreshProcs()
			spawn = p.workers.Load()-p.blocked.Load() < e.capLocked(p)
		}
	}
	if spawn {
		p.workers.Add(1)
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

// pushLocked adds an item to a root of pool p; e.mu is held.
func (e *executor) pushLocked(p *pool, root *Queue, it item) {
	qos := root.QoS()
	if c := it.child; c != nil {
		qos = max(qos, QoS(c.override))
		c.slot = int8(qos)
	}
	p.items[qos].pushBack(it)
	if p.items[qos].n == 1 {
		p.classes.Or(1 << qos)
	}
	p.n++
	e.queued.Add(1)
	if it.child == nil {
		root.acc++
	}
}

// hand keeps the drain of a queue that worker w's block (the caller) made runnable in w's
// ring, for w to run once that block returns: no lock, and no goroutine woken when another
// worker is already looking for work or no CPU is free. It reports false if the drain is of
// another root than the one w runs (its class) or the ring is full: the item then goes to
// its root.
func (e *executor) hand(w *worker, root, q *Queue, first func()) bool {
	if root != w.root || !w.local.put(q, first) {
		return false
	}
	p := w.p
	// The block may go on for long, or wait for the queue it just made runnable: with a CPU
	// free and nobody looking for work, start a worker that will look (as Go's wakep). The
	// spinner, for its part, clears spinner before it looks at the rings one last time
	// (spinLocked), so one of the two sees the other.
	if p.spinner.Load() || !e.roomFor(p) {
		return true
	}
	e.mu.Lock()
	spawn := !p.spinner.Load() && e.roomFor(p)
	if spawn {
		p.workers.Add(1)
	}
	e.mu.Unlock()
	if spawn {
		e.refreshProcs()
		go e.work(p) // the caller is p's worker, so of p's bubble: the new worker is too
	}
	return true
}

// roomFor reports whether pool p may start another worker now.
func (e *executor) roomFor(p *pool) bool {
	w := p.workers.Load()
	return w-p.blocked.Load() < e.capLocked(p) && w < maxWorkers
}

// takeHanded returns worker w's next handed item if w may run it now, with no lock: it is of
// the root w runs, nothing of a higher class waits in the roots, nothing of its class either
// or w took fewer than maxDirect handed items in a row, and w is not one too many
// (GOMAXPROCS shrank, lending ended). It costs one CAS and counts nothing: the monitor sees
// such a worker's progress by the CPU it uses (a busy worker is never helped), and takes
// what waits there long (monitor).
func (e *executor) takeHanded(w *worker) (*Queue, item, func(), bool) {
	// What w's ring holds is of w.root: hand takes drains of that root only, and the ring
	// is emptied before w runs another (work).
	x, has := w.local.next()
	if !has || w.root == nil {
		return nil, item{}, nil, false
	}
	p := w.p
	if waiting := p.classes.Load() >> w.qos; waiting != 0 {
		if waiting != 1 || w.direct >= maxDirect {
			return nil, item{}, nil, false
		}
		w.direct++
	}
	if p.workers.Load()-p.blocked.Load() > e.capLocked(p) {
		return nil, item{}, nil, false
	}
	got, ok := w.local.take(x)
	return w.root, item{child: got.q}, got.first, ok
}

// handFirst hands the drain of q, a plain serial queue on root that the caller made busy
// with its block fn (Queue.submitPlain), to the caller's worker with fn in the same ring
// entry, as push would hand the drain alone. It reports false, having done nothing, if the
// caller is not a worker that may keep it: fn then goes to q's batch and the drain to push.
func (e *executor) handFirst(root, q *Queue, fn func()) bool {
	w := workerOf(goid.G())
	return w != nil && addr(q) != w.cur && e.hand(w, root, q, fn)
}

// reclaimLocked moves w's handed items, if any, to their roots; e.mu is held.
func (e *executor) reclaimLocked(w *worker) {
	w.local.takeAll(func(root *Queue, it item) { e.pushLocked(w.p, root, it) })
}

// reclaimPoolLocked moves the handed items of all workers of pool p to their roots.
func (e *executor) reclaimPoolLocked(p *pool) {
	for _, w := range e.list {
		if w.p == p {
			e.reclaimLocked(w)
		}
	}
}

// handedLocked counts the items waiting in the rings of pool p's workers.
func (e *executor) handedLocked(p *pool) int32 {
	var n int32
	for _, w := range e.list {
		if w.p == p {
			n += w.local.size()
		}
	}
	return n
}

// rootContended reports whether work waits for a worker, for a drain on a root deciding
// whether to yield (Queue.contended): items in the roots, or one handed to the caller's own
// worker, which runs it only once the drain returns. What other workers were handed waits
// for them, not for this drain.
func (e *executor) rootContended() bool {
	if e.queued.Load() > 0 {
		return true
	}
	w := workerOf(goid.G())
	return w != nil && w.local.size() > 0
}

// workerLocked returns the worker running on goroutine g, or nil if g is not a worker.
func (e *executor) workerLocked(g uintptr) *worker {
	for _, w := range e.list {
		if w.g == g {
			return w
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
			if p.items[i].n == 0 {
				p.classes.And(^uint32(1 << i))
			}
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
	w.slotted = workerSlot(w.g).CompareAndSwap(nil, w)
	var last *Queue // the root whose item ran last, while a drain's labels are still set
	for p.workers.Load()-p.blocked.Load() <= e.capLocked(p) {
		// The ring's drains wait in their roots, where any worker takes them, unless the
		// roots' highest waiting class is theirs: then this worker runs one item of their root
		// (it gave its ring maxDirect turns while that waited) and goes on with its ring.
		hr := w.local.peek()
		if hr != nil {
			if c := p.classes.Load(); c == 0 || QoS(bits.Len32(c)-1) != hr.QoS() {
				e.reclaimLocked(w)
			}
		}
		root, it, ok := e.popLocked(p)
		if hr != nil && (!ok || root != hr) {
			e.reclaimLocked(w) // a ring holds drains of the root its worker runs only
			if !ok {
				root, it, ok = e.popLocked(p)
			}
		}
		if !ok {
			if p.spinner.Load() {
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
		w.root = root       // hand takes drains of this root only
		w.local.root = root // the ring is empty or of root already (above)
		w.direct = 0
		w.now.Store(int32(root.QoS()))
		if w.qos != root.QoS() {
			e.setWorkerQoS(w, root.QoS())
		}
		e.mu.Unlock()
		// The item, then what its blocks handed this worker (with first, a handed drain's
		// first block), while nothing else waits.
		var first func()
		for ok {
			w.home, w.cur = addr(root), addr(it.child)
			if it.child != nil {
				w.home = addr(it.child.target.Load())
			}
			exited = true
			if it.child == nil {
				root.setLabels()
				block = root
				prev, had, on = enterRunning(root, w.g)
			}
			if first != nil {
				runFirst(it.child, first, w.g)
				last = root
			} else if root.runBlock(it, w.g) {
				root.finished(1)
			} else {
				last = root
			}
			if block != nil {
				leaveRunning(w.g, prev, had, on)
				block = nil
			}
			exited = false
			root, it, first, ok = e.takeHanded(w)
		}
		e.mu.Lock()
		w.root, w.home, w.cur = nil, 0, 0
		w.now.Store(-1)
	}
	e.reclaimLocked(w) // leaving for the CPU cap: the workers that stay take it
	e.removeWorkerLocked(w)
	// A block handing a drain (hand) reads the worker count without the lock: it may have
	// counted this worker, found no room for another and relied on the workers it counted,
	// after this one had looked at the slots for the last time. Now that the count is down,
	// look again (the two sides' store-then-load meet, as a spinner's do): a drain handed
	// meanwhile goes to its root, with a worker started for it.
	if !p.spinner.Load() {
		e.reclaimPoolLocked(p)
		if p.n > 0 && e.roomFor(p) {
			p.workers.Add(1)
			go e.work(p) // this goroutine is of p's bubble, so the new worker is too
		}
	}
	if p.workers.Load() == 0 && p.n == 0 {
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
	if w.slotted {
		workerSlot(w.g).CompareAndSwap(w, nil)
	}
	w.root = nil
	w.now.Store(-1)
	e.setWorkerQoS(w, -1)
	w.p.workers.Add(-1)
}

// workerExited is called as worker w's goroutine ends inside a block with runtime.Goexit:
// the goroutine stops being a worker and, if items wait, a new worker takes its place.
func (e *executor) workerExited(w *worker) {
	p := w.p
	e.mu.Lock()
	e.reclaimLocked(w)
	e.removeWorkerLocked(w)
	// As a worker leaving for the CPU cap (work): a block handing a drain may have counted
	// this worker and found no room for another; the drain goes to its root, with a worker.
	if !p.spinner.Load() {
		e.reclaimPoolLocked(p)
	}
	spawn := p.n > 0 && e.roomFor(p)
	if spawn {
		p.workers.Add(1)
	} else if p.workers.Load() == 0 && p.n == 0 {
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
	p.extra.Store(0)
	if p.bubble != 0 {
		delete(e.bubbles, p.bubble)
	}
}

// spinLocked waits a little for new work, as the pool's one spinning worker; e.mu is held on
// entry and exit. It reports whether work arrived. Before it gives up it takes what other
// workers were handed and have not come back for: their blocks may be long, or wait for it.
func (e *executor) spinLocked(p *pool) bool {
	p.spinner.Store(true)
	e.mu.Unlock()
	for i := 0; i < spinRounds && e.queued.Load() == 0; i++ {
		runtime.Gosched()
	}
	e.mu.Lock()
	p.spinner.Store(false) // before the look at the slots: see hand
	if p.n == 0 {
		e.reclaimPoolLocked(p)
	}
	return p.n > 0
}

// blockEnter tells the executor that goroutine g is about to wait in a Sync. If g is a
// worker, another worker may start in its place, so waiting for a queue can never use up the
// executor. It returns g's pool if g is a worker (which must then call blockExit), else nil.
func (e *executor) blockEnter(g uintptr) *pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.workerLocked(g)
	if w == nil {
		return nil
	}
	p := w.p
	e.reclaimLocked(w) // what the worker was handed must not wait for its Sync
	p.blocked.Add(1)
	if e.roomFor(p) && p.n > 0 {
		p.workers.Add(1)
		go e.work(p) // g is of p's bubble, so the new worker is too
	}
	return p
}

func (e *executor) blockExit(p *pool) {
	e.mu.Lock()
	p.blocked.Add(-1)
	e.mu.Unlock()
}

// runningOn reports whether goroutine g is a worker running an item of root: a block
// submitted to it, or the drain of a queue that targets it.
func (e *executor) runningOn(g uintptr, root *Queue) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.list {
		if w.g == g {
			return w.home == addr(root) // the caller's own entry: it wrote home itself
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
