package wsserver

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The pollers of the readiness transport: one epoll instance per core, each with one
// goroutine waiting for it. That goroutine does not block a thread in epoll_wait: the epoll
// fd is itself registered with Go's own poller (an epoll fd is readable while it has events
// ready), so the poller goroutine parks in the scheduler like any reader of a socket and
// wakes without a thread hand-off. A connection's socket is registered once, edge-triggered,
// with the poller its id picks; when bytes arrive, that poller's goroutine runs the readers
// of the batch itself (see leader), or puts them on the run list, where a runner goroutine
// runs them (never a handler worker: a partial frame must not block the shared queue); the
// reader reads until the socket is empty at a message boundary and then lets the connection
// go (pollConn.edge and the reader states say how no edge is lost).
//
// The pollers serve every Server of the process. They start with the first registered
// connection and stop with the last, so a process without connections holds none of them.
type pollSet struct {
	pollers []*poller
	done    sync.WaitGroup

	// The run list: connections whose reader is due, taken in order by the runners, a few
	// long-lived goroutines that run reader after reader without parking in between. A
	// batch of wake-ups costs a lock and at most one runner woken, not a goroutine per
	// connection. No connection waits behind a reader that may block (one waiting for the
	// rest of a frame from a slow sender, or running a handler, which may wait for anything):
	// such a runner stops counting as busy first (blockBegin), and when work waits with no
	// runner busy, an idle runner is woken or a new one started (wakeLocked). A reader that
	// has read runTurn messages in a row goes to the back of the list when others wait.
	mu      sync.Mutex
	ready   []*pollConn // the run list, from head
	head    int
	idle    []*runner    // runners parked for work, at most maxIdle
	stopped bool         // the set stopped: runners end instead of parking
	pending atomic.Int32 // len(ready) - head
	busy    atomic.Int32 // runners neither parked nor in a section that may block
	maxBusy int32        // busy runners woken for pending work, at most (GOMAXPROCS)
	maxIdle int
	stop    chan struct{} // closed when the set stops: parked runners end

	watching atomic.Int32 // 1 while the watchdog runs (see watchdog)
}

// A runner is a goroutine of the run list; wake hands it work when it is parked.
type runner struct{ wake chan struct{} }

// readersPerCore bounds the parked runners: enough that a few slow senders or long
// handlers do not push wake-ups onto new goroutines.
const readersPerCore = 4

// testPollMaxBusy, if positive, is the maxBusy of poller sets started from now on (tests).
var testPollMaxBusy atomic.Int32

// testLeaderHold, while set, keeps the watchdog from ceding any leader's role (tests: only
// the other ways of ceding act).
var testLeaderHold atomic.Bool

// testPollCount, if positive, is the number of pollers of sets started from now on (tests:
// every connection on one poller).
var testPollCount atomic.Int32

// runTurn is how many messages a reader reads in a row while other connections wait.
const runTurn = 16

// A poller is one epoll instance. Its events carry the connection's poll id, not its fd: an fd
// is reused as soon as it is closed, an id never is, so a late event for a closed
// connection finds nothing instead of another connection.
type poller struct {
	epfd int
	f    *os.File        // epfd, registered with Go's poller; closing it stops the loop
	rc   syscall.RawConn // f's
	set  *pollSet
	wait func(fd uintptr) bool
	evs  []unix.EpollEvent
	n    int // events in evs

	// The goroutine that has the poller's role: it waits for events and runs the readers of
	// each batch itself (see leader), until it cedes the role to a new goroutine.
	lead atomic.Pointer[leader]

	// The registered connections: a dense table rather than a map (a pointer per connection,
	// not a map entry's ~37 B). add numbers a pollConn's id after its slot (low 32 bits) and
	// its process-wide number (high 32 bits), so that a late event for a connection gone
	// from a slot does not wake the one that took the slot next.
	mu    sync.Mutex
	conns []*pollConn
	free  []uint32 // empty slots of conns
}

// pollers is the process's poller set and the number of connections registered with it.
var pollers struct {
	mu  sync.Mutex
	n   int
	set *pollSet
}

// acquirePollers returns the running poller set, starting it for the first connection.
// Every successful call is balanced by one releasePollers.
func acquirePollers() (*pollSet, error) {
	pollers.mu.Lock()
	defer pollers.mu.Unlock()
	if pollers.set == nil {
		set, err := startPollers(runtime.GOMAXPROCS(0))
		if err != nil {
			return nil, err
		}
		pollers.set = set
	}
	pollers.n++
	return pollers.set, nil
}

// releasePollers stops the poller set when its last connection has gone, and waits until
// its goroutines have returned.
func releasePollers() {
	pollers.mu.Lock()
	defer pollers.mu.Unlock()
	pollers.n--
	if pollers.n > 0 {
		return
	}
	set := pollers.set
	pollers.set = nil
	for _, p := range set.pollers {
		_ = p.f.Close() // wakes the loop, which returns
		// A leader running readers (this may run on it: the last connection's reader closing
		// it) cedes the role: its successor finds the epoll fd closed and returns. One that
		// starts a batch after this is ceded by the watchdog if it does not come back.
		if l := p.lead.Load(); l != nil {
			p.cede(l)
		}
	}
	set.done.Wait()
	// The runners end as soon as they are idle. They are not waited for: this may run on
	// one of them (the last connection's reader closing it).
	// A reader started after this (the last connection's, woken by its Close) gets a
	// runner of its own, which ends after it.
	set.mu.Lock()
	set.stopped = true
	clear(set.idle)
	set.idle = set.idle[:0]
	set.mu.Unlock()
	close(set.stop)
}

func startPollers(n int) (*pollSet, error) {
	if c := testPollCount.Load(); c > 0 {
		n = int(c)
	}
	set := &pollSet{stop: make(chan struct{}), maxBusy: int32(n), maxIdle: readersPerCore * n}
	if b := testPollMaxBusy.Load(); b > 0 {
		set.maxBusy = b
	}
	for range n {
		p, err := newPoller()
		if err != nil {
			for _, p := range set.pollers {
				p.close()
			}
			return nil, err
		}
		p.set = set
		set.pollers = append(set.pollers, p)
	}
	set.done.Add(len(set.pollers)) // one per poller's role (see loop)
	for _, p := range set.pollers {
		go p.loop()
	}
	return set, nil
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("wsserver: epoll_create: %w", err)
	}
	// Non-blocking, os.NewFile registers it with Go's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("wsserver: epoll fd: %w", err)
	}
	p := &poller{epfd: epfd, f: os.NewFile(uintptr(epfd), "wsserver-epoll")}
	if p.rc, err = p.f.SyscallConn(); err != nil {
		p.close()
		return nil, fmt.Errorf("wsserver: epoll fd: %w", err)
	}
	p.evs = make([]unix.EpollEvent, pollEvents)
	p.wait = p.take
	return p, nil
}

func (p *poller) close() { _ = p.f.Close() }

// start puts readers on the run list (their states taken to readerRunning) and gets a
// runner going for them.
func (s *pollSet) start(pcs ...*pollConn) {
	s.mu.Lock()
	s.ready = append(s.ready, pcs...)
	s.pending.Add(int32(len(pcs)))
	s.wakeLocked()
	s.mu.Unlock()
}

// wakeLocked gets one more runner going for pending work, unless maxBusy are busy: a
// parked one, or when none is busy (so none would come for the work) and none is parked,
// a new one. A runner that takes work and sees more wakes the next (chained, as Go's
// scheduler wakes its spinning threads). s.mu is held.
func (s *pollSet) wakeLocked() {
	b := s.busy.Load()
	if b >= s.maxBusy {
		return
	}
	if n := len(s.idle); n > 0 {
		r := s.idle[n-1]
		s.idle[n-1] = nil
		s.idle = s.idle[:n-1]
		s.busy.Add(1)
		r.wake <- struct{}{} // buffered, and it was parked: never waits
		return
	}
	if b <= 0 {
		s.busy.Add(1)
		go s.runner(&runner{wake: make(chan struct{}, 1)})
	}
}

// runner runs readers from the run list until the set stops or enough runners are parked.
// It starts counted as busy.
func (s *pollSet) runner(r *runner) {
	// Grown when it starts and after each park: the collector shrinks an idle goroutine's
	// stack.
	growStack()
	for {
		pc, ok := s.next(r)
		if !ok {
			return
		}
		if pc == nil {
			growStack() // woken from a park
			continue
		}
		pc.runAs(flagOnRunner)
	}
}

// next takes the first reader off the run list. With none, it parks the runner until it is
// woken (nil, true) or ends it (nil, false): the set stopped, or enough runners are parked.
func (s *pollSet) next(r *runner) (*pollConn, bool) {
	s.mu.Lock()
	if s.head < len(s.ready) {
		pc := s.ready[s.head]
		s.ready[s.head] = nil
		s.head++
		if s.head == len(s.ready) {
			s.ready, s.head = s.ready[:0], 0
		}
		if s.pending.Add(-1) > 0 {
			s.wakeLocked()
		}
		s.mu.Unlock()
		return pc, true
	}
	s.busy.Add(-1)
	if s.stopped || len(s.idle) >= s.maxIdle {
		s.mu.Unlock()
		return nil, false
	}
	s.idle = append(s.idle, r)
	s.mu.Unlock()
	select {
	case <-r.wake: // counted busy again by the waker
		return nil, true
	case <-s.stop:
		// End, unless a waker took this runner off the parked ones first.
		select {
		case <-r.wake:
			return nil, true
		default:
			return nil, false
		}
	}
}

// blockBegin is called by a runner before what may block (a handler, a wait for the rest of
// a frame): it stops counting as busy, and if work waits with no runner busy now, another
// runner goes for it. The check after the count pairs with start's after its push: one of
// the two sees the other.
func (s *pollSet) blockBegin() {
	if s.busy.Add(-1) <= 0 && s.pending.Load() > 0 {
		s.mu.Lock()
		if s.pending.Load() > 0 {
			s.wakeLocked()
		}
		s.mu.Unlock()
	}
}

// blockEnd is blockBegin's end: the runner is busy again.
func (s *pollSet) blockEnd() { s.busy.Add(1) }

func (s *pollSet) pick(id uint64) *poller { return s.pollers[id%uint64(len(s.pollers))] }

// pollEvents is how many events one epoll_wait takes.
const pollEvents = 128

// A leader is a goroutine with a poller's role. It waits for events and runs the readers of
// each batch itself, one after the other: no hand-off to a runner (a lock, a channel and a
// goroutine switch per wake-up). A reader on a leader must not keep the others waiting: one
// about to wait for the socket (the rest of a frame, the close handshake, a pong's write)
// cedes the role first (pollConn.blockBegin), and one that runs on, a handler that blocks
// or takes long included, is ceded by the watchdog after one to two leaderTicks. Ceding
// starts a new goroutine with the role and puts the rest of the batch on the run list; the
// old goroutine ends after its reader.
type leader struct {
	// pos is the next reader of the batch to run while the leader runs readers (>= 0), or
	// leaderWaiting, or leaderCeded. The leader takes each reader with a CompareAndSwap, and
	// a cede takes the rest with one: each reader of the batch runs exactly once, on the
	// leader or on the run list.
	pos   atomic.Int32
	cur   atomic.Pointer[pollConn] // the reader the leader runs or last ran
	batch []*pollConn              // written by the leader while pos is leaderWaiting
}

const (
	leaderWaiting int32 = -2 // the leader waits for events, or collects them
	leaderCeded   int32 = -1 // another goroutine has the role; this one ends after its reader
)

// leaderTick is how often the watchdog looks at the leaders: a reader that runs on for a
// whole tick cedes the role.
const leaderTick = time.Millisecond

// watchQuiet is how many ticks in a row the watchdog sees no leader running readers before
// it ends.
const watchQuiet = 200

// loop is a poller's role: it waits for readable sockets and runs their readers, until the
// epoll fd is closed or it cedes the role. The set's done counts the role, not the goroutine.
func (p *poller) loop() {
	growStack()
	l := &leader{batch: make([]*pollConn, 0, pollEvents)}
	l.pos.Store(leaderWaiting)
	p.lead.Store(l)
	for {
		if err := p.rc.Read(p.wait); err != nil {
			p.set.done.Done() // closed by releasePollers
			return
		}
		p.mu.Lock()
		for i := range p.evs[:p.n] {
			if pc := p.lookup(eventID(&p.evs[i])); pc != nil {
				if p.evs[i].Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					pc.flags.Or(flagHangUp) // before its edge: the reader sees it
				}
				l.batch = append(l.batch, pc)
			}
		}
		p.mu.Unlock()
		k := 0
		for _, pc := range l.batch {
			if pc.edge() {
				l.batch[k] = pc
				k++
			}
		}
		clear(l.batch[k:])
		l.batch = l.batch[:k]
		if k > 0 && !p.runBatch(l) {
			return // ceded: the batch belongs to the cede, the role to another goroutine
		}
		clear(l.batch)
		l.batch = l.batch[:0]
	}
}

// runBatch runs the readers of l.batch on the leader; false when the role was ceded meanwhile.
func (p *poller) runBatch(l *leader) bool {
	n := int32(len(l.batch))
	l.pos.Store(0)
	p.set.watch()
	for {
		i := l.pos.Load()
		if i < 0 {
			return false
		}
		if i == n {
			return l.pos.CompareAndSwap(n, leaderWaiting)
		}
		pc := l.batch[i]
		l.cur.Store(pc)
		if !l.pos.CompareAndSwap(i, i+1) {
			return false // ceded before pc: pc is on the run list
		}
		pc.runAs(flagOnLeader)
	}
}

// cede gives the poller's role to a new goroutine if l runs readers, and puts the readers
// of its batch it has not taken on the run list; it reports whether it did.
func (p *poller) cede(l *leader) bool {
	for {
		i := l.pos.Load()
		if i < 0 {
			return false
		}
		if l.pos.CompareAndSwap(i, leaderCeded) {
			go p.loop()
			if rest := l.batch[i:]; len(rest) > 0 {
				p.set.start(rest...)
			}
			return true
		}
	}
}

// cedeFor cedes the role if pc's reader runs on the leader (it is about to wait).
func (p *poller) cedeFor(pc *pollConn) {
	if l := p.lead.Load(); l != nil && l.cur.Load() == pc {
		p.cede(l)
	}
}

// watch makes sure the watchdog runs: a leader starts a batch.
func (s *pollSet) watch() {
	if s.watching.Load() == 0 && s.watching.CompareAndSwap(0, 1) {
		go s.watchdog()
	}
}

// watchdog cedes the role of a leader whose reader has run on for a whole tick (one that
// blocks in a handler, or takes long). It ends when the set stops, or after watchQuiet
// ticks without a leader running readers; a leader starting a batch starts it again. Its
// check after saying it ended pairs with runBatch's after publishing pos (watch).
func (s *pollSet) watchdog() {
	t := time.NewTicker(leaderTick)
	defer t.Stop()
	type seen struct {
		l   *leader
		pc  *pollConn
		pos int32
	}
	last := make([]seen, len(s.pollers))
	quiet := 0
	for {
		select {
		case <-s.stop:
			s.watching.Store(0)
			return
		case <-t.C:
		}
		active := false
		for i, p := range s.pollers {
			l := p.lead.Load()
			if l == nil {
				continue
			}
			now := seen{l, l.cur.Load(), l.pos.Load()}
			if now.pos < 0 {
				last[i] = seen{}
				continue
			}
			active = true
			if now == last[i] && !testLeaderHold.Load() && p.cede(l) {
				now = seen{}
			}
			last[i] = now
		}
		if active {
			quiet = 0
			continue
		}
		if quiet++; quiet < watchQuiet {
			continue
		}
		s.watching.Store(0)
		if !s.leading() || !s.watching.CompareAndSwap(0, 1) {
			return
		}
		quiet = 0
	}
}

// leading reports whether a leader runs readers.
func (s *pollSet) leading() bool {
	for _, p := range s.pollers {
		if l := p.lead.Load(); l != nil && l.pos.Load() >= 0 {
			return true
		}
	}
	return false
}

// take collects the ready events without waiting; with none, it has Go's poller wait for
// the epoll fd to turn readable.
func (p *poller) take(fd uintptr) bool {
	for {
		n, err := epollTake(int(fd), p.evs)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			panic(fmt.Sprintf("wsserver: epoll_wait: %v", err)) // EBADF, EFAULT, EINVAL: a bug
		}
		p.n = n
		return n > 0
	}
}

// The 64-bit epoll_data is split in two int32 fields by x/sys/unix.

func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// lookup returns the connection an event's id names, or nil if it is gone. p.mu is held.
func (p *poller) lookup(id uint64) *pollConn {
	if i := uint32(id); int(i) < len(p.conns) {
		if pc := p.conns[i]; pc != nil && pc.id == id {
			return pc
		}
	}
	return nil
}

// add gives pc a slot, and renumbers pc.id after it (see poller); it runs before the
// socket joins epoll, whose events carry pc.id.
func (p *poller) add(pc *pollConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var i uint32
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		i = uint32(len(p.conns))
		p.conns = append(p.conns, nil)
	}
	pc.id = uint64(i) | uint64(uint32(pc.id))<<32
	p.conns[i] = pc
}

func (p *poller) remove(pc *pollConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := uint32(pc.id); int(i) < len(p.conns) && p.conns[i] == pc {
		p.conns[i] = nil
		p.free = append(p.free, i)
	}
	// Once every connection has gone, let go of what a crowd needed.
	if len(p.free) == len(p.conns) && cap(p.conns) > 1024 {
		p.conns, p.free = nil, nil
	}
}

// registered counts the connections registered with the pollers now (for tests).
func registered() int {
	pollers.mu.Lock()
	defer pollers.mu.Unlock()
	return pollers.n
}
