package queue

import (
	"sync"
	"sync/atomic"
	"weak"
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

// fastSyncers holds, weakly, every serial queue that a plain Sync (syncPlain) has taken
// without the lock. Such a Sync leaves no mark in syncTable: the queue's hold word names its
// caller already (holdFast and the goroutine, until the caller's release), so syncingOn finds
// it by reading the hold words of these queues. That spares an uncontended Sync the mark's
// two fenced operations (a CAS to take a slot, an atomic store to free it). A queue joins
// once, on its first such Sync; entries of collected queues are swept as the set grows.
var fastSyncers struct {
	mu   sync.Mutex
	qs   map[weak.Pointer[Queue]]struct{}
	kept int // len(qs) after the last sweep
}

// noteFastSync puts q in fastSyncers if it is not there yet. The caller holds q by its hold
// word (holdFast) and has not started the block.
func (q *Queue) noteFastSync() {
	if q.flags.Load()&flagFastSynced == 0 {
		q.joinFastSyncers()
	}
}

func (q *Queue) joinFastSyncers() {
	fastSyncers.mu.Lock()
	defer fastSyncers.mu.Unlock()
	if q.flags.Load()&flagFastSynced != 0 {
		return
	}
	if fastSyncers.qs == nil {
		fastSyncers.qs = map[weak.Pointer[Queue]]struct{}{}
	}
	if len(fastSyncers.qs) >= 2*fastSyncers.kept+64 {
		for w := range fastSyncers.qs {
			if w.Value() == nil {
				delete(fastSyncers.qs, w)
			}
		}
		fastSyncers.kept = len(fastSyncers.qs)
	}
	fastSyncers.qs[weak.Make(q)] = struct{}{}
	q.flags.Or(flagFastSynced)
}

// syncingOn reports whether goroutine g, the caller, runs a Sync block of a queue whose chain
// ends at root. (Only g itself may ask: it reads the queue of the slots g holds.)
func syncingOn(g uintptr, root *Queue) bool {
	on := func(q *Queue) bool {
		for q != nil && q.kind != rootKind {
			q = q.target.Load()
		}
		return q == root
	}
	if fastSyncingOn(g, on) {
		return true
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

// fastSyncingOn reports whether goroutine g holds a queue of fastSyncers by its hold word
// (a plain Sync's) that on accepts.
func fastSyncingOn(g uintptr, on func(*Queue) bool) bool {
	fastSyncers.mu.Lock()
	defer fastSyncers.mu.Unlock()
	for w := range fastSyncers.qs {
		q := w.Value()
		if q == nil {
			continue
		}
		// The goroutine part of the word is g's own only while g holds q: g wrote it with
		// its CAS and only g's release clears it.
		if h := q.hold.Load(); h&holdFast != 0 && uintptr(h>>holdShift) == g && on(q) {
			return true
		}
	}
	return false
}
