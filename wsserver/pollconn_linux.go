package wsserver

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"
)

// pollConn is the net.Conn coder/websocket reads from under the readiness transport. The
// frame guard above it parses every frame of the bytes it hands on (frameGuard.boundary),
// and when the stream stands at a message boundary and the socket is empty, its Read says "would block" instead of
// waiting: coder/websocket's Read then returns that error without closing anything (no
// close happens at a frame boundary, and bufio clears the error), and the reader hands the
// socket back to its poller and lets its goroutine go. Control frames (ping, pong, close)
// are read the same way, inside coder's Read.
//
// Anywhere else (inside a frame, inside a fragmented message, or once a close handshake is
// under way: coder's Close reads the peer's answer itself) Read waits in Go's own poller.
// Waiting inside a frame is bounded by PongTimeout between bytes; a peer that trickles a
// frame slowly holds only its own reader goroutine, and keepalive ends it (it cannot
// answer a ping mid-frame).
//
// The bytes come through a read buffer taken from a pool when the reader starts and given
// back when it parks: an idle connection holds none.
type pollConn struct {
	c     *Conn
	bw    *batchWriter  // it holds the socket (sock): not kept twice
	guard *frameGuard   // what coder/websocket reads through; it reads from pc.read
	br    *bufio.Reader // coder/websocket's reader buffer, on the guard (set by the hijack)
	raw   syscall.RawConn
	id    uint64 // what its epoll events carry: unique in the process (Conn.ID is per Server)

	state    atomic.Uint32 // readerRunning, readerAgain, readerArmed, readerParked
	blocking atomic.Bool   // every Read waits: a close handshake is under way (or no poller)

	// flags: flagOutside is set while the reader touches the stream outside
	// coder/websocket's read lock (prefill, letGo): coder's Close may read the peer's answer
	// from another goroutine under that lock, once blocking is set (setBlocking waits for
	// it to clear). flagOnRunner says that the reader runs on a runner of the run list
	// (pollSet), which must not block without saying so (blockBegin), flagOnLeader that it
	// runs on a poller's leader, which cedes its role before it may block: set by each
	// reader as it takes the connection. (One word for all: a pollConn of 192 B, not 208.)
	flags atomic.Uint32
	fd    int32 // beside the atomics, in what would be padding: a pollConn of 192 B, not 208

	// Owned by the reader (one at a time: see state).
	buf      *[]byte // pooled; nil while parked
	off, n   int     // the unread bytes of buf
	deadline int64   // the read deadline set mid-frame: nanoseconds since pollEpoch (monotonic); 0: none
	rawN     int32   // with rawErr, an int32 and an Errno rather than an int and an error: a smaller pollConn
	drained  bool    // the last read (fill's) came back short with one message: the socket was empty after it (see prefill)
	streams  uint8   // confirming reads to make before leaving them out again (see prefill): the peer streams
	skips    uint8   // confirming reads left out since the last one made
	keepWS   bool    // this reader episode read a data message through coder/websocket: its Conn is kept (see dropQuiet)
	rawFn    func(fd uintptr) bool
	rawP     []byte
	rawErr   syscall.Errno
	err      error // what the next read says: an error fill found before coder read

	mu     sync.Mutex // guards the registration, so that the fd leaves epoll before it closes
	p      *poller
	added  bool
	closed bool
}

// Reader states. Exactly one party moves the state out of readerArmed or readerParked (a
// CompareAndSwap): that party runs the reader.
//
// The socket is registered edge-triggered, once: epoll reports each arrival of bytes, not
// a readable socket, and needs no re-arming per wake-up. An edge that comes while a reader
// runs would be lost if the reader then parked on the strength of a read that came before
// those bytes: the poller records it (readerRunning to readerAgain), and the reader parks
// only by moving readerRunning to readerArmed, so a recorded edge sends it back to read.
// The reader clears readerAgain before each read at a message boundary: the edges before
// that read are for bytes it reads.
const (
	readerRunning uint32 = iota // a goroutine is reading
	readerAgain                 // a goroutine is reading; bytes came since its last empty read
	readerArmed                 // nobody reads; the poller starts a reader at the next edge
	readerParked                // the handler is MaxPending behind; handled restarts it
)

// pollStep is a step of the readiness transport that tests can wait for (testHookPoll).
type pollStep uint8

const (
	stepArming   pollStep = iota // the reader found the socket empty at a message boundary
	stepArmed                    // the reader let its goroutine go
	stepMidFrame                 // the reader waits for the rest of a frame
	stepEdge                     // the poller saw bytes arrive while a reader ran
	stepEmpty                    // the reader's read found the socket empty
)

// testHookPoll, if set, is called at each pollStep (tests only).
var testHookPoll atomic.Pointer[func(pc *pollConn, step pollStep)]

func pollHook(pc *pollConn, step pollStep) {
	if h := testHookPoll.Load(); h != nil {
		(*h)(pc, step)
	}
}

// confirmProbe: of the confirming reads a peer that waits for answers could do without,
// one in confirmProbe is made (see prefill).
const confirmProbe = 4

// streamHold is how many confirming reads in a row must find the socket empty before they
// are left out again.
const streamHold = 16

// pollBufSize is the pooled read buffer: several small frames per read system call.
const pollBufSize = 4 << 10

var pollBufPool = sync.Pool{New: func() any { b := make([]byte, pollBufSize); return &b }}

// pollIDs numbers the pollConns of the process.
var pollIDs atomic.Uint64

// pollEpoch is what pollConn.deadline counts from.
var pollEpoch = time.Now()

// errWouldBlock is what Read says at a message boundary with an empty socket.
var errWouldBlock = errors.New("wsserver: no message to read (would block)")

// newPollConn wraps nc for the readiness transport, or returns nil when nc is not a socket
// the poller can wait on (TLS: decrypted bytes wait in crypto/tls, unseen by epoll). early
// holds bytes that came with the upgrade request.
func newPollConn(nc net.Conn, early []byte, bw *batchWriter, guard *frameGuard) *pollConn {
	var sc syscall.Conn
	switch x := nc.(type) {
	case *net.TCPConn:
		sc = x
	case *net.UnixConn:
		sc = x
	default:
		return nil
	}
	raw := bw.raw // the same socket's (direct mode): one RawConn less per connection
	if raw == nil {
		var err error
		if raw, err = sc.SyscallConn(); err != nil {
			return nil
		}
	}
	pc := &pollConn{bw: bw, guard: guard, raw: raw, fd: -1, id: pollIDs.Add(1)}
	guard.src = (*pollSource)(pc)
	_ = raw.Control(func(fd uintptr) { pc.fd = int32(fd) })
	if pc.fd < 0 {
		return nil
	}
	pc.rawFn = pc.rawRead
	if len(early) > 0 {
		pc.getBuf()
		if len(early) > len(*pc.buf) {
			b := make([]byte, len(early))
			pc.buf = &b
		}
		pc.n = copy(*pc.buf, early)
	}
	return pc
}

// register adds the connection to a poller; the first run of the reader arms it.
func (pc *pollConn) register(c *Conn) error {
	pc.c = c
	set, err := acquirePollers()
	if err != nil {
		return err
	}
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		releasePollers()
		return net.ErrClosed
	}
	pc.p = set.pick(pc.id)
	pc.p.add(pc)
	pc.mu.Unlock()
	return nil
}

// Read is what coder/websocket reads: the guard's checked frames.
func (pc *pollConn) Read(p []byte) (int, error) { return pc.guard.Read(p) }

// sock is the socket, which the batch writer holds. pollConn is the net.Conn that
// coder/websocket gets: the rest of its methods are the socket's.
func (pc *pollConn) sock() net.Conn { return pc.bw.nc }

func (pc *pollConn) Write(p []byte) (int, error)        { return pc.sock().Write(p) }
func (pc *pollConn) LocalAddr() net.Addr                { return pc.sock().LocalAddr() }
func (pc *pollConn) RemoteAddr() net.Addr               { return pc.sock().RemoteAddr() }
func (pc *pollConn) SetDeadline(t time.Time) error      { return pc.sock().SetDeadline(t) }
func (pc *pollConn) SetReadDeadline(t time.Time) error  { return pc.sock().SetReadDeadline(t) }
func (pc *pollConn) SetWriteDeadline(t time.Time) error { return pc.sock().SetWriteDeadline(t) }

// pollSource is the guard's source: the socket's bytes, tracked (pollConn.read).
type pollSource pollConn

func (s *pollSource) Read(p []byte) (int, error) { return (*pollConn)(s).read(p) }

// read hands on bytes of the client's stream; see pollConn.
func (pc *pollConn) read(p []byte) (int, error) {
	if pc.off < pc.n {
		return pc.serve(p), nil
	}
	if err := pc.err; err != nil {
		pc.err = nil
		return 0, err
	}
	if pc.blocking.Load() || !pc.guard.boundary() {
		return pc.readWait(p)
	}
	return pc.readReady(p)
}

// serve copies buffered bytes into p.
func (pc *pollConn) serve(p []byte) int {
	n := copy(p, (*pc.buf)[pc.off:pc.n])
	pc.off += n
	return n
}

func (pc *pollConn) getBuf() {
	if pc.buf == nil {
		pc.buf = pollBufPool.Get().(*[]byte)
	}
	pc.off, pc.n = 0, 0
}

func (pc *pollConn) putBuf() {
	if pc.buf != nil && len(*pc.buf) == pollBufSize {
		pollBufPool.Put(pc.buf)
	}
	pc.buf, pc.off, pc.n = nil, 0, 0
}

// readWait waits for bytes in Go's poller: mid-message, or during a close handshake (whose
// deadline the closing side set).
func (pc *pollConn) readWait(p []byte) (int, error) {
	if !pc.blocking.Load() {
		pollHook(pc, stepMidFrame)
		// Between bytes of a frame, a sender may pause PongTimeout at most.
		timeout := pc.c.s.opts.PongTimeout
		if now := time.Since(pollEpoch); time.Duration(pc.deadline)-now < timeout/2 {
			pc.deadline = int64(now + timeout)
			_ = pc.sock().SetReadDeadline(time.Now().Add(timeout))
		}
	}
	if pc.blockBegin() {
		// The read may wait: other connections' readers must not wait for it.
		defer pc.blockEnd()
	}
	if len(p) >= pollBufSize {
		return pc.sock().Read(p)
	}
	pc.getBuf()
	n, err := pc.sock().Read(*pc.buf)
	if n > 0 {
		pc.n = n
		return pc.serve(p), nil
	}
	return 0, err
}

// readReady reads what the socket holds without waiting for it, at a message boundary.
func (pc *pollConn) readReady(p []byte) (int, error) {
	if err := pc.fill(); err != nil {
		return 0, err
	}
	return pc.serve(p), nil
}

// quiet reports whether the stream stands at a message boundary with nothing read and not
// handed on: the reader then fills the buffer before it calls coder/websocket's Reader,
// and lets the connection go without calling it when the socket is empty (coder wraps the
// "would block" twice on its way out, each a fmt.Errorf).
func (pc *pollConn) quiet() bool { return pc.off >= pc.n && pc.ours() }

// ours reports whether the next bytes of the stream are those of pc's buffer (or the
// socket's), at a message boundary: none wait in coder/websocket's reader buffer, no error
// does, and no close handshake reads.
func (pc *pollConn) ours() bool {
	return pc.err == nil && (pc.br == nil || pc.br.Buffered() == 0) && !pc.blocking.Load() &&
		pc.guard.boundary()
}

// prefill fills the buffer before coder/websocket reads when the stream is quiet (see
// quiet): errWouldBlock when the socket is empty; any other error is left for coder to
// read, so that it ends the connection as it does. Then, when the buffer starts with a
// whole message in one frame that the guard takes (frameGuard.takeMessage), it returns
// that message (ok): coder/websocket's Reader is not called for it. In direct mode a whole
// ping or pong is taken the same way (frameGuard.takeControl): ctl is its opcode, data its
// payload (valid until the next read), for the caller to hand to the hooks coder would have
// called (control): a keepalive round does not make coder's Conn again (coder.go).
func (pc *pollConn) prefill() (typ websocket.MessageType, data []byte, ctl byte, ok bool, err error) {
	if !pc.enter() {
		return 0, nil, 0, false, nil
	}
	if !pc.ours() {
		pc.drained = false // see below
	} else {
		if pc.off < pc.n {
			// More than one message came with one read: a peer that streams, whose next
			// bytes are likely there by now; the next read at a boundary is made.
			pc.drained = false
		} else {
			// The last read came back short with one message: the socket was empty after
			// it, and whatever came since came with an edge, which the poller records
			// (readerAgain) or, once the connection is let go, answers with a reader. The
			// confirming read, which for a peer that waits for the answer only says "would
			// block" (a system call per wake-up), can be left out. For a peer that streams
			// it takes the next message without a trip through the poller: it is made
			// after a read that brought several messages, one time in confirmProbe to find
			// out, and once one found bytes, until streamHold of them in a row found none.
			// A FIN, a reset or an error read with the last bytes come with no edge of
			// their own: once epoll has reported one (flagHangUp), the read is made.
			confirm := pc.drained && pc.state.Load() == readerRunning &&
				pc.flags.Load()&flagHangUp == 0
			if confirm && pc.streams == 0 && pc.skips < confirmProbe-1 {
				pc.skips++
				pc.putBuf()
				pc.flags.And(^flagOutside)
				return 0, nil, 0, false, errWouldBlock
			}
			err = pc.fill()
			if confirm {
				pc.skips = 0
				if err == nil {
					pc.streams = streamHold
				} else if pc.streams > 0 {
					pc.streams--
				}
			}
			if err != nil && err != errWouldBlock && pc.c.ws.Load() != nil {
				// Without coder's Conn (dropped: coder.go) the error is returned here:
				// making one again only for it to read the error would be wasted.
				pc.err, err = err, nil
			}
		}
		if err == nil && pc.off < pc.n {
			var n int
			b := (*pc.buf)[pc.off:pc.n]
			typ, data, n = pc.guard.takeMessage(b, pc.c.s.opts.ReadLimit)
			if n == 0 && pc.c.bw.direct {
				ctl, data, n = pc.guard.takeControl(b)
			}
			pc.off += n
			ok = n > 0 && ctl == 0
		}
	}
	pc.flags.And(^flagOutside)
	return typ, data, ctl, ok, err
}

// control does for a ping or pong that prefill took what coder/websocket does when it reads
// one in direct mode: it calls the same hooks, with the reader's context (the ping's answer
// is written by Conn.onPing, which may wait for the socket: outside flagOutside).
func (pc *pollConn) control(op byte, p []byte) {
	a := pc.c.s.accept
	if op == opcodePing {
		a.OnPingReceived((*readCtx)(pc.c), p)
	} else if a.OnPongReceived != nil {
		a.OnPongReceived((*readCtx)(pc.c), p)
	}
}

// dropCoder lets the connection's coder/websocket Conn go, and the buffers it reads and
// writes through, when nothing of it is in flight: the reader calls it at a message boundary
// with the socket empty, before it arms (and letGo before it hands the connection back). The
// rules are in coder.go: outside coder's lock (enter: not once a close handshake reads),
// with nothing buffered and no error waiting (quiet), no close seen by the guard, and under
// Conn.mu while the connection is open.
func (pc *pollConn) dropCoder() {
	if pc.c.ws.Load() == nil || !pc.enter() {
		return
	}
	if pc.quiet() {
		pc.dropQuiet()
	}
	pc.flags.And(^flagOutside)
}

// dropQuiet is dropCoder once the reader has entered (enter) and found the stream quiet.
func (pc *pollConn) dropQuiet() {
	c := pc.c
	ws := c.ws.Load()
	if ws == nil || pc.keepWS || !c.coderDroppable() || pc.guard.is(gClosed) {
		// keepWS: this episode's messages needed coder's Conn (fragmented, or larger than
		// the read buffer); the next is likely to need it too. It is dropped at the end of
		// the first episode that reads none through it (for an idle peer: the one that
		// reads the pong to keepalive's next ping).
		return
	}
	c.mu.Lock()
	if c.state.Load() == stateOpen {
		c.dropCoderLocked(ws)
	}
	c.mu.Unlock()
}

// letGo hands the connection back to its poller while its reader runs a handler inline
// (Conn.runInline): only when the stream is quiet (nothing buffered anywhere, so all that
// comes next comes with an edge) and no edge was recorded since the last read. The reader
// takes it back after the handler unless a reader started meanwhile.
func (pc *pollConn) letGo() bool {
	if !pc.enter() {
		return false
	}
	quiet := pc.quiet()
	if quiet {
		pc.putBuf()
		pc.dropQuiet() // an armed connection holds no coder Conn: another reader makes it if needed
	}
	pc.flags.And(^flagOutside)
	return quiet && pc.arm() && pc.state.CompareAndSwap(readerRunning, readerArmed)
}

// enter marks the reader outside coder/websocket's read lock, unless a close handshake
// reads (blocking): then it reports false.
func (pc *pollConn) enter() bool {
	pc.flags.Or(flagOutside)
	if pc.blocking.Load() {
		pc.flags.And(^flagOutside)
		return false
	}
	return true
}

// fill reads what the socket holds into the buffer without waiting for it, at a message
// boundary: errWouldBlock when it is empty.
func (pc *pollConn) fill() error {
	if pc.deadline != 0 {
		pc.deadline = 0
		_ = pc.sock().SetReadDeadline(time.Time{})
	}
	pc.getBuf()
	// The edges recorded so far are for bytes this read gets. (Looked at first: with none
	// recorded, as at most reads, no locked instruction. An edge that comes after the look
	// stays recorded, which costs one more read at most.)
	if pc.state.Load() == readerAgain {
		pc.state.CompareAndSwap(readerAgain, readerRunning)
	}
	n, err := pc.tryRead(*pc.buf)
	pc.drained = n > 0 && n < len(*pc.buf)
	switch {
	case n > 0:
		pc.n = n
		return nil
	case err == nil:
		err = io.EOF
	case err == unix.EAGAIN: // tryRead's Errno, unwrapped
		pollHook(pc, stepEmpty)
		err = errWouldBlock
	}
	pc.putBuf()
	return err
}

// tryRead is one read(2) that never waits.
func (pc *pollConn) tryRead(b []byte) (int, error) {
	pc.rawP, pc.rawN, pc.rawErr = b, 0, 0
	err := pc.raw.Read(pc.rawFn)
	n, errno := int(pc.rawN), pc.rawErr
	pc.rawP, pc.rawErr = nil, 0
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

func (pc *pollConn) rawRead(fd uintptr) bool {
	for {
		n, err := nbRead(fd, pc.rawP)
		if err == unix.EINTR {
			continue
		}
		pc.rawN = int32(max(n, 0)) // n <= len(rawP), the pooled buffer or a Read's p (< 2 GiB)
		if err != nil {
			pc.rawErr = syscall.EIO // nbRead returns Errno errors only
			if e, ok := err.(syscall.Errno); ok {
				pc.rawErr = e
			}
		}
		return true
	}
}

// A reader does not linger (wait in Go's poller a while for a busy peer's next message
// before it lets the connection go): measured with session 4's reader pool, the
// edge-triggered registration and the inline handler, lingering readers cost more CPU per
// echoed message than the wake-ups they saved, and held the pool's goroutines, pushing other
// connections' wake-ups onto new goroutines.

// run is the connection's first reader, on the goroutine that accepted it (runAs).
func (pc *pollConn) run() { pc.runAs(0) }

// runAs is the connection's reader: it reads and dispatches messages until the socket is
// empty at a message boundary, then hands the socket to its poller and returns. It finishes
// the connection when reading fails. Only the party that took the state to readerRunning
// calls it; on says where it runs: flagOnRunner on a runner of the run list (see pollSet),
// flagOnLeader on a poller's leader (see leader), 0 on a goroutine of its own.
func (pc *pollConn) runAs(on uint32) {
	c := pc.c
	pc.setOn(on)
	// Started by an edge (or resumed, or first after the upgrade): there are bytes to read,
	// whatever the last read of an earlier reader said.
	pc.drained = false
	pc.keepWS = false
	limit := int32(c.s.opts.MaxPending)
	for turn := 0; ; turn++ {
		if c.backlog.Load() >= limit {
			// Park until the handler catches up; handled restarts the reader. Check again
			// after publishing the state: a handler that finished before saw no parked
			// reader. Meanwhile nothing reads the peer's pongs: keepalive spares it (paused).
			c.pauses.Add(1)
			c.setFlag(flagPaused, true)
			pc.drained = false // edges are not recorded while parked: read when resumed
			pc.state.Store(readerParked)
			if c.backlog.Load() >= limit || !pc.state.CompareAndSwap(readerParked, readerRunning) {
				return
			}
			c.setFlag(flagPaused, false)
		}
		if turn >= runTurn && (on == flagOnLeader || on == flagOnRunner && pc.p.set.pending.Load() > 0) {
			// Others wait for a runner (on a leader: the rest of its batch, and its
			// poller): this reader goes on after them.
			pc.p.set.start(pc)
			return
		}
		err := pc.step()
		if err == nil {
			continue
		}
		if err == errHandedOff { // step's own: never wrapped
			return
		}
		if err != errWouldBlock && !errors.Is(err, errWouldBlock) { // prefill's, or coder's wrapping it
			if pc.blockBegin() {
				// The close handshake may wait for the peer.
				defer pc.blockEnd()
			}
			c.readFailed(err)
			c.finish(err)
			return
		}
		if !pc.arm() {
			pc.drained = false
			continue // closed (the read fails), or epoll refused (reads wait from now on)
		}
		// The moment the state says armed, the poller may start another reader: the
		// coder/websocket Conn is dropped before (coder.go). Bytes that came since the
		// empty read (or the short one, see prefill): read on.
		pollHook(pc, stepArming)
		pc.dropCoder()
		if !pc.state.CompareAndSwap(readerRunning, readerArmed) {
			pc.state.Store(readerRunning)
			pc.drained = false // the recorded edge calls for a read
			continue
		}
		pollHook(pc, stepArmed)
		return
	}
}

// The bits of pollConn.flags.
const (
	flagOutside  uint32 = 1 << iota // the reader touches the stream outside coder's lock
	flagOnRunner                    // the reader runs on a runner of the run list
	flagHangUp                      // epoll reported the peer's FIN, a hang-up or an error (see prefill)
	flagOnLeader                    // the reader runs on a poller's leader

	flagsOn = flagOnRunner | flagOnLeader
)

// setOn records where the reader runs: flagOnRunner, flagOnLeader or 0.
func (pc *pollConn) setOn(on uint32) {
	if f := pc.flags.Load(); f&flagsOn != on {
		pc.flags.And(^flagsOn)
		pc.flags.Or(on)
	}
}

// blockBegin is called before the reader may block: on a runner it tells the run list
// (pollSet.blockBegin) and reports true (blockEnd must follow); on a leader it cedes the
// poller's role first (poller.cedeFor).
func (pc *pollConn) blockBegin() bool {
	switch pc.flags.Load() & flagsOn {
	case flagOnRunner:
		pc.p.set.blockBegin()
		return true
	case flagOnLeader:
		pc.p.cedeFor(pc)
	}
	return false
}

func (pc *pollConn) blockEnd() { pc.p.set.blockEnd() }

// errHandedOff says that another reader has the connection now (step).
var errHandedOff = errors.New("wsserver: another reader has the connection")

// step reads one message and hands it to the handler: queued, or run inline when nothing
// of the connection's waits (Conn.runInline), the connection let go meanwhile (letGo). It
// returns errWouldBlock when the socket is empty at a message boundary, and errHandedOff
// when a reader started while the handler ran inline.
func (pc *pollConn) step() error {
	c, on := pc.c, pc.flags.Load()&flagsOn
	typ, data, ctl, taken, err := pc.prefill()
	if err != nil {
		return err
	}
	if ctl != 0 {
		pc.control(ctl, data)
		return nil
	}
	if !taken {
		if typ, data, err = c.readMessage(); err != nil {
			return err
		}
		pc.keepWS = true
	}
	m, ok, err := c.admit(typ, data)
	if err != nil || !ok {
		return err
	}
	if c.backlog.Add(1) > 1 {
		c.queueAfterInline(m)
		stepHook(&testHookQueued, c)
		return nil
	}
	// Until this reader enters the queue with m, a reader started meanwhile holds what it
	// reads back (queueAfterInline): queued at once, it would run before m.
	c.setFlag(flagInline, true)
	if !pc.letGo() {
		c.setFlag(flagInline, false) // no other reader started: the connection is still ours
		c.queueMessage(m)
		stepHook(&testHookQueued, c)
		return nil
	}
	if on == flagOnRunner {
		// A handler may wait for anything: other connections' readers must not wait for it.
		// (On a leader, the watchdog cedes the poller's role if it runs on: see leader.)
		pc.p.set.blockBegin()
	}
	stepHook(&testHookInline, c)
	c.runInline(m)
	if on == flagOnRunner {
		pc.p.set.blockEnd()
	}
	// Take the connection back, unless another reader has it now.
	if !pc.state.CompareAndSwap(readerArmed, readerRunning) {
		return errHandedOff
	}
	pc.setOn(on)
	return nil
}

// wake starts the reader if the socket was armed, or records the edge for the running
// reader: the connection closed (Close).
func (pc *pollConn) wake() {
	if pc.edge() {
		pc.start()
	}
}

// edge takes the state from readerArmed to readerRunning and reports true (the caller starts
// the reader), or records the edge for a running reader: the poller saw bytes arrive, or the
// connection closed. A parked reader reads until the socket is empty when it resumes: it
// needs no record.
func (pc *pollConn) edge() bool {
	for {
		switch pc.state.Load() {
		case readerArmed:
			if pc.state.CompareAndSwap(readerArmed, readerRunning) {
				return true
			}
		case readerRunning:
			if pc.state.CompareAndSwap(readerRunning, readerAgain) {
				pollHook(pc, stepEdge)
				return false
			}
		default:
			return false
		}
	}
}

// start runs the reader, on a runner of the run list when the connection has a poller.
func (pc *pollConn) start() {
	if p := pc.p; p != nil {
		p.set.start(pc)
		return
	}
	go pc.runOnGrownStack()
}

// runOnGrownStack is run on a new goroutine's stack grown once, while it is one frame deep
// (the runners grow theirs the same way).
// A reader reads through coder/websocket, the frame guard, the handler hand-off and an
// Observer: deep enough that a goroutine's first 2 KiB stack grew two or three times per
// wake-up, each time copying and re-walking every frame (13% of the echo server's CPU at
// one wake-up per message, by profile). One growth at the top costs a copy of one frame.
func (pc *pollConn) runOnGrownStack() {
	growStack()
	pc.run()
}

// stackReserve is what growStack takes: the reader's path with an Observer fits in it.
const stackReserve = 8 << 10

// growStack makes the goroutine's stack big enough for a reader's whole path, at once.
//
//go:noinline
func growStack() {
	var reserve [stackReserve]byte
	keep(reserve[:])
}

//go:noinline
func keep([]byte) {}

// resume restarts a reader parked on a full backlog, once the handler is below limit.
func (pc *pollConn) resume(limit int32) {
	if pc.state.Load() == readerParked && pc.c.backlog.Load() < limit &&
		pc.state.CompareAndSwap(readerParked, readerRunning) {
		pc.c.setFlag(flagPaused, false)
		pc.start()
	}
}

// setBlocking makes every later Read wait: a close handshake reads the peer's answer. It
// returns once the reader is not touching the stream outside coder/websocket's lock (at
// most one non-blocking read(2)): the handshake's reads may start.
func (pc *pollConn) setBlocking() {
	pc.blocking.Store(true)
	for pc.flags.Load()&flagOutside != 0 {
		runtime.Gosched()
	}
}

// arm registers the socket, edge-triggered, the first time; later it is registered
// already. It reports false when the connection is closed, or epoll refused (the
// connection then goes on as with a reader goroutine). It runs while the reader runs: an
// edge that comes meanwhile is recorded (readerAgain), and a close after it wakes the
// reader (Close).
func (pc *pollConn) arm() bool {
	if pc.added {
		return true
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed || pc.p == nil {
		return false
	}
	// Registering reports the bytes already there, too.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET}
	setEventID(&ev, pc.id)
	if err := unix.EpollCtl(pc.p.epfd, unix.EPOLL_CTL_ADD, int(pc.fd), &ev); err != nil {
		pc.blocking.Store(true)
		return false
	}
	pc.added = true
	return true
}

// Close takes the socket out of epoll, then closes it (after flushing a batch a close frame
// may sit in and draining what was received, as flushingConn does), and wakes an armed
// reader so that it finishes the connection.
func (pc *pollConn) Close() error {
	pc.bw.flushBeforeClose()
	drainReceived(pc.sock())
	pc.mu.Lock()
	first := !pc.closed
	pc.closed = true
	p := pc.p
	if first && p != nil {
		if pc.added {
			var ev unix.EpollEvent
			_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(pc.fd), &ev)
		}
		p.remove(pc)
	}
	pc.mu.Unlock()
	err := pc.sock().Close()
	if first && p != nil {
		releasePollers()
	}
	if first {
		pc.wake()
	}
	return err
}
