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
	// labelContextAt's lookup, written out (a Sync used as a lock pays for each call), for
	// the label's setter: the same labels, handed over without a key comparison.
	c := labelCache[q.lslot].Load()
	if c == nil || c.label != q.label {
		c = fillLabelSlot(q.lslot, q.label)
	}
	pprof.SetGoroutineLabels(c.set)
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
	set   context.Context // for pprof.SetGoroutineLabels: a labelSetter of ctx's labels (or ctx)
}

// labelSetter is a context made for pprof.SetGoroutineLabels alone, which asks its context
// for one value, the labels, under runtime/pprof's own (unexported) key: a labelSetter holds
// a label context's labels and answers every key with them, where the label context (a
// valueCtx) compares the key as an interface first. That comparison was ~30% of a Sync's
// label switch. A labelSetter never reaches code other than SetGoroutineLabels, and is
// used only once newLabelCtx has seen that it carries the labels it was made from.
type labelSetter struct {
	context.Context // Background's: no deadline, never done
	labels          any
}

func (s *labelSetter) Value(any) any { return s.labels }

// keyRecorder records the key it is asked for: pprofLabelKey shows it to pprof.Label.
type keyRecorder struct {
	context.Context
	key any
}

func (r *keyRecorder) Value(key any) any {
	r.key = key
	return nil
}

// pprofLabelKey is the key runtime/pprof keeps a context's labels under (nil if pprof.Label
// asked for none: then the label contexts are passed to SetGoroutineLabels as they are).
var pprofLabelKey = func() any {
	r := &keyRecorder{Context: context.Background()}
	pprof.Label(r, ProfileLabel)
	return r.key
}()

// newLabelCtx makes the label context of a label, and its setter.
func newLabelCtx(label string) *labelCtx {
	c := &labelCtx{label: label, ctx: pprof.WithLabels(context.Background(), pprof.Labels(ProfileLabel, label))}
	c.set = c.ctx
	if pprofLabelKey != nil {
		s := &labelSetter{Context: context.Background(), labels: c.ctx.Value(pprofLabelKey)}
		if v, ok := pprof.Label(s, ProfileLabel); ok && v == label {
			c.set = s
		}
	}
	return c
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
	if c := labelCache[i].Load(); c != nil && c.label == label {
		return c.ctx
	}
	return fillLabelSlot(i, label).ctx
}

func fillLabelSlot(i uint16, label string) *labelCtx {
	c := newLabelCtx(label)
	labelCache[i].Store(c)
	return c
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
