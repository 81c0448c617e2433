package queue

import (
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
)

// syncers records which goroutines run a Sync block, and on which queue, for IsCurrent on a
// Global root: a root keeps no holders of its own, and a Sync caller need not be one of its
// workers. Each Sync takes a slot for the time its block runs (one compare-and-swap, no
// allocation); IsCurrent on a root, which is rare (assertions), reads them all.
const syncSlots = 1024

type syncSlot struct {
	g atomic.Uintptr
	// q is written and read only by the goroutine g names, while it does: the CAS that
	// takes the slot and the store that frees it order it for the next one.
	q *Queue
	_ [48]byte // a cache line per slot: Syncs on different cores do not share one
}

var (
	syncTable [syncSlots]syncSlot
	// syncOverflow holds the Syncs that found every slot taken.
	syncOverflowMu sync.Mutex
	syncOverflow   map[*syncEntry]struct{}
)

type syncEntry struct {
	g uintptr
	q *Queue
}

// syncMark is what enterSync took, for leaveSync.
type syncMark struct {
	slot  *syncSlot
	entry *syncEntry
}

// enterSync records that goroutine g runs a Sync block of q.
func enterSync(g uintptr, q *Queue) syncMark {
	start := int((g >> 4) * 0x9E3779B1 % syncSlots)
	for i := range syncSlots {
		s := &syncTable[(start+i)%syncSlots]
		if s.g.Load() == 0 && s.g.CompareAndSwap(0, g) {
			s.q = q
			return syncMark{slot: s}
		}
	}
	e := &syncEntry{g: g, q: q}
	syncOverflowMu.Lock()
	if syncOverflow == nil {
		syncOverflow = map[*syncEntry]struct{}{}
	}
	syncOverflow[e] = struct{}{}
	syncOverflowMu.Unlock()
	return syncMark{entry: e}
}

func leaveSync(m syncMark) {
	if m.slot != nil {
		m.slot.q = nil
		m.slot.g.Store(0)
		return
	}
	syncOverflowMu.Lock()
	delete(syncOverflow, m.entry)
	syncOverflowMu.Unlock()
}

// A plain Sync (syncPlain: a serial queue on a root, taken with the hold word's CAS) takes no
// slot: its mark is the caller's stack. Its block is called by the onRoot function of the
// queue's root, a function of its own for each root, not inlined, so that IsCurrent on that
// root, asked by the caller (IsCurrent is about the caller only), finds that function's frame
// on its stack while the block runs, one frame per plain Sync it is nested in. That spares
// an uncontended Sync the slot's CAS and atomic store, two fenced operations, and costs no
// memory; IsCurrent on a root, which is rare (assertions), walks the caller's stack.
var onRoot = [numQoS]func(func()){onRoot0, onRoot1, onRoot2, onRoot3, onRoot4}

// onRootName holds the onRoot functions' names, as a stack's frames give them.
var onRootName = func() (names [numQoS]string) {
	for k, f := range onRoot {
		names[k] = runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name()
	}
	return names
}()

//go:noinline
func onRoot0(fn func()) { fn() }

//go:noinline
func onRoot1(fn func()) { fn() }

//go:noinline
func onRoot2(fn func()) { fn() }

//go:noinline
func onRoot3(fn func()) { fn() }

//go:noinline
func onRoot4(fn func()) { fn() }

// onRoot's five functions are numQoS's: the build fails where they differ.
var (
	_ [numQoS - 5]struct{}
	_ [5 - numQoS]struct{}
)

// runOnRoot calls fn from root's onRoot function (syncPlain writes this switch out). Direct
// calls, not a call through onRoot: the compiler then sees that fn does not escape.
func runOnRoot(root *Queue, fn func()) {
	switch root.qos.Load() {
	case 0:
		onRoot0(fn)
	case 1:
		onRoot1(fn)
	case 2:
		onRoot2(fn)
	case 3:
		onRoot3(fn)
	default:
		onRoot4(fn)
	}
}

// onRootInStack reports whether the caller's stack holds a frame of root's onRoot function:
// the caller runs a plain Sync block of a queue that targets root.
func onRootInStack(root *Queue) bool {
	name := onRootName[uint32(root.qos.Load())%uint32(numQoS)]
	var pcs [64]uintptr
	for skip := 2; ; skip += len(pcs) {
		n := runtime.Callers(skip, pcs[:])
		frames := runtime.CallersFrames(pcs[:n])
		for {
			f, more := frames.Next()
			if f.Function == name {
				return true
			}
			if !more {
				break
			}
		}
		if n < len(pcs) {
			return false
		}
	}
}

// syncingOn reports whether goroutine g, the caller, runs a Sync block of a queue whose chain
// ends at root. (Only g itself may ask: it reads the queue of the slots g holds, and its own
// stack.)
func syncingOn(g uintptr, root *Queue) bool {
	if onRootInStack(root) {
		return true
	}
	on := func(q *Queue) bool {
		for q != nil && q.kind != rootKind {
			q = q.target.Load()
		}
		return q == root
	}
	for i := range syncTable {
		s := &syncTable[i]
		if s.g.Load() == g && on(s.q) { // g is the caller: the slot is its own
			return true
		}
	}
	syncOverflowMu.Lock()
	defer syncOverflowMu.Unlock()
	for e := range syncOverflow {
		if e.g == g && on(e.q) {
			return true
		}
	}
	return false
}
