package queue

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/internal/goid"
)

// maxWorkers caps the goroutines the executor runs at once, counting the extra ones it starts
// while workers are blocked in Sync.
const maxWorkers = 4096

// executor runs the Global root queues on worker goroutines. Workers exist only while there
// is work: one is started when a root gets an item and fewer than GOMAXPROCS are running, and
// it exits when every root is empty. A worker always takes the highest-QoS item first.
type executor struct {
	mu      sync.Mutex
	roots   [numQoS]*Queue
	items   [numQoS]deque
	workers int32 // running worker goroutines
	blocked int32 // of those, waiting in a Sync (they do not count against GOMAXPROCS)
	list    []*worker
	cpus    atomic.Int32 // GOMAXPROCS as last read; re-read whenever a worker starts
	queued  atomic.Int32 // items in all roots, for the spinning worker to watch
	spinner bool         // a worker is briefly waiting for work before it exits
	refused uint32       // spawns refused by the CPU cap, to pace re-reading GOMAXPROCS

	// The monitor lends workers when every worker is stuck (see monitor.go).
	extra      int32  // workers lent beyond GOMAXPROCS because the others were stuck
	extraTotal uint64 // workers ever lent
	started    uint64 // root items taken by workers: progress, as the monitor sees it
	monitoring bool   // the monitor goroutine is running
}

// spinRounds is how many times an idle worker yields (runtime.Gosched) while watching for new
// work before it exits. A few microseconds of it saves a goroutine start per burst; yielding
// rather than busy-waiting gives the core to any goroutine that has something to do.
const spinRounds = 16

type worker struct {
	g    uintptr
	root *Queue // the root whose item the worker runs now
}

var exec = newExecutor()

func newExecutor() *executor {
	e := &executor{}
	for i := range e.roots {
		qos := QoS(i)
		e.roots[i] = &Queue{label: "global." + qos.String(), kind: rootKind, qos: qos}
	}
	e.cpus.Store(int32(runtime.GOMAXPROCS(0)))
	return e
}

// Global returns the shared root concurrent queue of a QoS class. Its width is GOMAXPROCS,
// and all roots share one pool of that many workers, the higher classes served first. Queues
// created without WithTarget run on Global(their QoS).
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

// push adds an item to a root queue and starts a worker if one may run.
func (e *executor) push(root *Queue, it item) {
	e.mu.Lock()
	qos := root.qos
	if c := it.child; c != nil {
		qos = max(qos, QoS(c.override))
		c.slot = int8(qos)
	}
	e.items[qos].pushBack(it)
	e.queued.Add(1)
	if it.child == nil {
		root.acc++
	}
	// The spinning worker, if any, will take one item; start another for anything more.
	covered := e.spinner && e.queued.Load() <= 1
	spawn := !covered && e.workers-e.blocked < e.capLocked() && e.workers < maxWorkers
	if !spawn && !covered && e.workers < maxWorkers {
		// Refused by the CPU cap: GOMAXPROCS may have grown since we last looked. Look again
		// now and then, not on every submission to a saturated executor.
		if e.refused++; e.refused%64 == 1 {
			e.refreshProcs()
			spawn = e.workers-e.blocked < e.capLocked()
		}
	}
	if spawn {
		e.workers++
		e.refreshProcs() // a goroutine start costs far more than this look
	}
	startMonitor := !e.monitoring
	e.monitoring = true
	e.mu.Unlock()
	if startMonitor {
		go e.monitor()
	}
	if spawn {
		go e.work()
	}
}

// popLocked takes the next item, highest QoS first.
func (e *executor) popLocked() (*Queue, item, bool) {
	for i := numQoS - 1; i >= 0; i-- {
		for e.items[i].n > 0 {
			e.queued.Add(-1)
			it := e.items[i].popFront()
			if it.fn == nil && it.child == nil && it.x == nil {
				continue // a drain moved to a higher QoS
			}
			e.started++
			if it.child != nil {
				it.child.slot = -1
			}
			return e.roots[i], it, true
		}
	}
	return nil, item{}, false
}

func (e *executor) work() {
	w := &worker{g: goid.G()}
	e.mu.Lock()
	e.list = append(e.list, w)
	for e.workers-e.blocked <= e.capLocked() {
		root, it, ok := e.popLocked()
		if !ok {
			if e.spinner || !e.spinLocked() {
				break
			}
			continue
		}
		w.root = root
		e.mu.Unlock()
		if it.child == nil {
			root.setLabels()
			if prev, had, on := enterRunning(root, w.g); on {
				if root.runBlock(it, w.g) {
					root.finished(1)
				}
				leaveRunning(w.g, prev, had, on)
				e.mu.Lock()
				w.root = nil
				continue
			}
		}
		if root.runBlock(it, w.g) {
			root.finished(1)
		}
		e.mu.Lock()
		w.root = nil
	}
	for i, v := range e.list {
		if v == w {
			e.list[i] = e.list[len(e.list)-1]
			e.list[len(e.list)-1] = nil
			e.list = e.list[:len(e.list)-1]
			break
		}
	}
	e.workers--
	e.mu.Unlock()
	e.refreshProcs()
}

// spinLocked waits a little for new work, as the one spinning worker; e.mu is held on entry
// and exit. It reports whether work arrived.
func (e *executor) spinLocked() bool {
	e.spinner = true
	e.mu.Unlock()
	for i := 0; i < spinRounds && e.queued.Load() == 0; i++ {
		runtime.Gosched()
	}
	e.mu.Lock()
	e.spinner = false
	return e.hasItemsLocked()
}

// blockEnter tells the executor that goroutine g is about to wait in a Sync. If g is a
// worker, another worker may start in its place, so waiting for a queue can never use up the
// executor. It reports whether g is a worker (and so must call blockExit).
func (e *executor) blockEnter(g uintptr) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.isWorkerLocked(g) {
		return false
	}
	e.blocked++
	if e.workers-e.blocked < e.capLocked() && e.workers < maxWorkers && e.hasItemsLocked() {
		e.workers++
		go e.work()
	}
	return true
}

func (e *executor) blockExit() {
	e.mu.Lock()
	e.blocked--
	e.mu.Unlock()
}

func (e *executor) isWorkerLocked(g uintptr) bool {
	for _, w := range e.list {
		if w.g == g {
			return true
		}
	}
	return false
}

func (e *executor) hasItemsLocked() bool {
	for i := range e.items {
		if e.items[i].n > 0 {
			return true
		}
	}
	return false
}

// runningOn reports whether goroutine g is a worker running an item of root.
func (e *executor) runningOn(g uintptr, root *Queue) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.list {
		if w.g == g {
			return w.root == root
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
	return e.items[root.qos].n, running
}
