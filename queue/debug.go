package queue

import (
	"context"
	"fmt"
	"hash/maphash"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
)

// ProfileLabel is the runtime/pprof label key under which blocks run, Sync blocks included:
// its value is the queue's label, so `go tool pprof -tagfocus queue=...` shows one queue's
// CPU time. After a Sync block the caller gets back the label of the queue it was running on
// when that queue is up the Sync's target chain; otherwise it gets the labels of the Sync's
// ctx (none for Sync), as pprof.Do leaves them.
const ProfileLabel = "queue"

// setLabels makes the goroutine's profiler labels name q, unless q opted out. It costs a
// label switch per drain, not per block.
func (q *Queue) setLabels() {
	if q.debug&noProfileLabels != 0 {
		return
	}
	pprof.SetGoroutineLabels(labelContextAt(q.lslot, q.label))
}

// restoreLabels sets the goroutine's profiler labels back after a Sync block ran under its
// queue's: to those of back, the queue up the chain that the caller was running on already,
// or else to ctx's labels (none for Sync), as pprof.Do leaves them.
func restoreLabels(back *Queue, ctx context.Context) {
	if back != nil && back.kind != rootKind && back.debug&noProfileLabels == 0 {
		back.setLabels()
		return
	}
	pprof.SetGoroutineLabels(ctx)
}

// labelCtx is the profiler-label context of one label, shared by every queue of that label.
type labelCtx struct {
	label string
	ctx   context.Context
}

// labelCache keeps label contexts by a hash of their label, one per slot: a queue holds none
// of its own (that cost an idle queue 128 bytes once it had run), and the cache stays this
// size however many labels a program makes. Labels that share a slot take turns in it; one
// that lost its slot costs a new context (three small allocations) at its next drain.
var (
	labelCache [labelSlots]atomic.Pointer[labelCtx]
	labelSeed  = maphash.MakeSeed()
)

const labelSlots = 1024

// labelSlot is the slot of labelCache for a label; a queue computes it once, at creation.
func labelSlot(label string) uint16 {
	return uint16(maphash.String(labelSeed, label) % labelSlots)
}

// labelContext returns a context carrying the profiler label naming a queue of this label.
func labelContext(label string) context.Context {
	return labelContextAt(labelSlot(label), label)
}

// labelContextAt is labelContext for a label whose slot is known (labelSlot): a drain pays a
// load and a string comparison (a pointer comparison for the queue's own label), no hash.
func labelContextAt(i uint16, label string) context.Context {
	slot := &labelCache[i]
	if c := slot.Load(); c != nil && c.label == label {
		return c.ctx
	}
	c := &labelCtx{label: label, ctx: pprof.WithLabels(context.Background(), pprof.Labels(ProfileLabel, label))}
	slot.Store(c)
	return c.ctx
}

// callSite returns "file:line (func)" of the code that called the API function that called
// it, skip frames up.
func callSite(skip int) string {
	pc, file, line, ok := runtime.Caller(skip + 1)
	if !ok {
		return ""
	}
	name := ""
	if f := runtime.FuncForPC(pc); f != nil {
		name = f.Name()
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
	}
	return fmt.Sprintf("%s:%d (%s)", file, line, name)
}

// deadlock detection across queues: with it on, a Sync caller about to wait for a queue
// records what it waits for, and refuses to wait if that closes a cycle: the queue's holder
// (transitively) waits for a queue the caller holds.
var (
	detectMu   sync.Mutex
	detectOn   bool
	waitingFor = map[uintptr]waitEdge{} // goroutine -> what it waits for; guarded by detectMu
)

type waitEdge struct {
	q    *Queue
	site string
}

// DetectDeadlocks turns on (or off) the detection of Sync cycles across queues: a Sync from
// a block of A onto B, while a block of B waits in Sync for A, returns ErrWouldDeadlock (Sync
// panics) naming both queues and both Sync call sites, instead of hanging. A queue is followed
// to the goroutine holding it alone or in its only slot, and a queue nobody holds to its
// target, where its blocks wait. Off, it costs
// nothing; on, it costs a global lock and a runtime.Caller on every Sync that has to wait.
// The self-deadlock of a Sync onto the caller's own queue is always caught.
func DetectDeadlocks(on bool) {
	detectMu.Lock()
	detectOn = on
	detectMu.Unlock()
}

// beginWait records that goroutine me waits for x, or reports the cycle that waiting would
// close. end must be called once the wait is over.
func beginWait(me uintptr, x *Queue, site string) (end func(), err error) {
	detectMu.Lock()
	defer detectMu.Unlock()
	if !detectOn {
		return func() {}, nil
	}
	path := []string{fmt.Sprintf("%q (Sync at %s)", x.label, site)}
	cur := x
	for range 64 {
		holder, up := cur.blocker()
		if up != nil {
			path[len(path)-1] += fmt.Sprintf(" (whose blocks wait for %q)", up.label)
			cur = up
			continue
		}
		if holder == 0 {
			break
		}
		if holder == me {
			return nil, fmt.Errorf("%w: a cycle of Syncs across queues: the caller waits for %s", ErrWouldDeadlock, strings.Join(path, ", which is held by a goroutine waiting for "))
		}
		edge, ok := waitingFor[holder]
		if !ok {
			break
		}
		path = append(path, fmt.Sprintf("%q (Sync at %s)", edge.q.label, edge.site))
		cur = edge.q
	}
	waitingFor[me] = waitEdge{x, site}
	return func() {
		detectMu.Lock()
		delete(waitingFor, me)
		detectMu.Unlock()
	}, nil
}
