package wsserver

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The pollers of the readiness transport: one epoll instance per core, each with one
// goroutine waiting for it. That goroutine does not block a thread in epoll_wait: the epoll
// fd is itself registered with Go's own poller (an epoll fd is readable while it has events
// ready), so the poller goroutine parks in the scheduler like any reader of a socket and
// wakes without a thread hand-off. A connection's socket is registered once, edge-triggered,
// with the poller its id picks; when bytes arrive, that poller has a goroutine of the reader
// pool run the connection's reader (never a handler worker: a partial frame must not block
// the shared queue), which reads until the socket is empty at a message boundary and then
// lets the connection go (pollConn.wake and the reader states say how no edge is lost).
//
// The pollers serve every Server of the process. They start with the first registered
// connection and stop with the last, so a process without connections holds none of them.
type pollSet struct {
	pollers []*poller
	done    sync.WaitGroup

	// The reader pool: long-lived goroutines that run ready connections' readers, so that a
	// wake-up costs a hand-off, not a goroutine start and its stack's growth. A reader is
	// handed over only to a pool goroutine waiting for one (an unbuffered channel), so no
	// connection ever waits behind another's reader (one blocked mid-frame by a slow sender,
	// or running its handler): when none waits, the pool grows up to readersMax goroutines,
	// and past that a fresh goroutine runs the reader and ends with it.
	handoff chan *pollConn
	stop    chan struct{} // closed when the set stops: the pool goroutines end
	readers atomic.Int32  // pool goroutines alive
	max     int32
}

// readersPerCore bounds the reader pool: enough that a few slow senders or long handlers do
// not push the wake-ups of busy connections onto fresh goroutines.
const readersPerCore = 4

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
	}
	set.done.Wait()
	// The pool goroutines end as soon as they are idle. They are not waited for: this may
	// run on one of them (the last connection's reader closing it).
	close(set.stop)
}

func startPollers(n int) (*pollSet, error) {
	set := &pollSet{handoff: make(chan *pollConn), stop: make(chan struct{}), max: int32(readersPerCore * n)}
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
	for _, p := range set.pollers {
		set.done.Go(p.loop)
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

// start runs pc's reader: on a pool goroutine waiting for one, or on a new pool goroutine
// while the pool is below its bound, or else on a goroutine of its own.
func (s *pollSet) start(pc *pollConn) {
	select {
	case s.handoff <- pc:
		return
	default:
	}
	if s.readers.Add(1) <= s.max {
		go s.reader(pc)
		return
	}
	s.readers.Add(-1)
	go pc.runOnGrownStack()
}

// reader is a pool goroutine: it runs the readers handed to it until the set stops.
func (s *pollSet) reader(pc *pollConn) {
	defer s.readers.Add(-1)
	for {
		// Grown at every hand-off: the collector shrinks an idle goroutine's stack.
		growStack()
		pc.run()
		select {
		case pc = <-s.handoff:
		case <-s.stop:
			return
		}
	}
}

func (s *pollSet) pick(id uint64) *poller { return s.pollers[id%uint64(len(s.pollers))] }

// pollEvents is how many events one epoll_wait takes.
const pollEvents = 128

// loop waits for readable sockets and starts their readers, until the epoll fd is closed.
func (p *poller) loop() {
	ready := make([]*pollConn, 0, pollEvents)
	for {
		if err := p.rc.Read(p.wait); err != nil {
			return // closed by releasePollers
		}
		p.mu.Lock()
		for i := range p.evs[:p.n] {
			if pc := p.lookup(eventID(&p.evs[i])); pc != nil {
				ready = append(ready, pc)
			}
		}
		p.mu.Unlock()
		for i, pc := range ready {
			pc.wake()
			ready[i] = nil
		}
		ready = ready[:0]
	}
}

// take collects the ready events without waiting; with none, it has Go's poller wait for
// the epoll fd to turn readable.
func (p *poller) take(fd uintptr) bool {
	for {
		n, err := unix.EpollWait(int(fd), p.evs, 0)
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
