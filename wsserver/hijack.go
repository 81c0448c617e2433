package wsserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// hijackWriter wraps the ResponseWriter that coder/websocket's Accept hijacks, to hand it
// buffers sized for an idle connection instead of net/http's 4 KiB + 4 KiB:
//   - a small read buffer (Options.ReadBufferSize): a frame header and a small message fit;
//     a bigger payload is read straight into the message;
//   - a small write buffer (16 bytes; 128 under compression, where coder/websocket frames
//     the data too) over a batchWriter that puts each control frame coder/websocket writes
//     back together before it goes out, coalesces a burst of data frames into one system
//     call and holds a pooled buffer only while the connection's writer runs.
//
// It also records the status of a refused handshake for the Observer.
type hijackWriter struct {
	http.ResponseWriter
	readSize     int
	poll         bool // try the readiness transport
	writeTimeout time.Duration
	status       int
	nc           net.Conn
	bw           *batchWriter
	guard        *frameGuard
	pc           *pollConn     // the readiness transport's wrapper, when it applies
	br           *bufio.Reader // the reader handed to coder/websocket, and what it reads
	src          io.Reader
}

// minReadBuffer is the smallest buffer bufio.Reader takes.
const minReadBuffer = 16

// controlFrameMax is the largest control frame a server writes: 2 header bytes and 125.
const controlFrameMax = 128

// writeBufferSize is the buffer of the bufio.Writer coder/websocket writes through. In direct
// mode it writes only control frames, which the batchWriter reassembles: bufio's buffer
// need not hold one (an idle connection holds it). Under compression it frames the data
// too, in one write per frame up to this size.
func writeBufferSize(direct bool) int {
	if direct {
		return 16
	}
	return controlFrameMax
}

func (h *hijackWriter) WriteHeader(code int) {
	h.status = code
	h.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (h *hijackWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Hijack takes the connection from net/http and drops net/http's buffers. Bytes the client
// sent right after its request (net/http may have read one already) are read first by the
// frame guard, which the returned net.Conn reads through (Accept keeps what the returned
// reader has buffered, nothing here, and then reads from the net.Conn).
func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	direct := !strings.Contains(h.Header().Get("Sec-WebSocket-Extensions"), "permessage-deflate")
	h.guard = &frameGuard{src: nc, compressed: !direct}
	if h.poll {
		// The wrapper serves the early bytes itself, so that its frame tracking sees them,
		// and coder/websocket's reader buffer shrinks to bufio's least: the wrapper's own
		// buffer is pooled while the connection is idle. It reads through the guard too.
		var early []byte
		if n := brw.Reader.Buffered(); n > 0 {
			early, _ = brw.Reader.Peek(n)
		}
		bw := newBatchWriter(nc, direct)
		bw.timeout, bw.guard = h.writeTimeout, h.guard
		if pc := newPollConn(nc, early, bw, h.guard); pc != nil {
			h.nc, h.bw, h.pc = nc, bw, pc
			h.br, h.src = bufio.NewReaderSize(pc, minReadBuffer), pc
			pc.br = h.br
			return pc, bufio.NewReadWriter(h.br, bufio.NewWriterSize(bw, writeBufferSize(direct))), nil
		}
	}
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		h.guard.src = io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc)
	}
	h.nc = nc
	h.bw = newBatchWriter(nc, direct)
	h.bw.timeout, h.bw.guard = h.writeTimeout, h.guard
	fc := flushingConn{nc, h.bw, h.guard}
	// Nothing buffered in it: Accept reads everything through fc, so through the guard.
	h.br, h.src = bufio.NewReaderSize(fc, h.readSize), fc
	return fc, bufio.NewReadWriter(h.br, bufio.NewWriterSize(h.bw, writeBufferSize(direct))), nil
}

// unwrapReader points the reader handed to coder/websocket straight at its source again.
// Accept wraps what it reads from in an io.MultiReader of the bytes that reader had
// buffered (none: Hijack hands over an empty one) and the connection, and the wrapper
// (56 bytes) would stay with the connection for its life.
func (h *hijackWriter) unwrapReader() {
	if h.br != nil && h.br.Buffered() == 0 {
		h.br.Reset(h.src)
	}
}

// flushingConn is the net.Conn coder/websocket closes. A control frame its reader writes
// (the echo of the peer's close) may land in the writer's batch; coder closes the socket
// right after writing it, so Close flushes the batch first.
type flushingConn struct {
	net.Conn
	bw    *batchWriter
	guard *frameGuard
}

// Read is what coder/websocket reads the peer's frames from: through the guard.
func (c flushingConn) Read(p []byte) (int, error) { return c.guard.Read(p) }

func (c flushingConn) Close() error {
	c.bw.flushBeforeClose()
	drainReceived(c.Conn)
	return c.Conn.Close()
}

// drainReceived reads (and drops) what the socket has received and not yet been read,
// without waiting for more: closing a TCP socket with unread input resets the connection,
// and a reset can destroy, at the peer, the close frame just written. The close handshake
// has been done (or given up) when this runs, so nothing of value is dropped.
func drainReceived(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok || runtime.GOOS == "windows" {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var buf [4096]byte
	// Control, not Read: it does not wait for the read lock a reader blocked in Read holds.
	// The socket is non-blocking: a read with nothing left returns EAGAIN at once.
	_ = raw.Control(func(fd uintptr) {
		for range 256 { // at most 1 MiB: a peer still sending is not worth more
			n, err := sysRead(syscall.Read, fd, buf[:])
			if err == syscall.EINTR {
				continue
			}
			if n <= 0 || err != nil {
				return
			}
		}
	})
}

// batchBufSize is the pooled buffer a writer coalesces frames into.
const batchBufSize = 16 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}

// batchWriter sits under coder/websocket's bufio.Writer. Outside a batch it writes through
// (control frames written by the reader or a ping). While the connection's writer runs a
// batch, frames collect in a pooled buffer and go out in one write at flush, under the
// write deadline the writer set.
//
// Unless permessage-deflate was negotiated (direct), data frames are framed here, not by
// coder/websocket: a server frame is a 2-10 byte header and the payload, and framing it
// here spares coder's per-message locking and lets a message go out from the sender's
// goroutine (tryFrame) when the socket takes it at once. coder/websocket then writes only
// control frames, each (at most 127 bytes, within its 128-byte bufio.Writer) in one Write,
// and every write to the socket happens under mu, so frames never interleave.
type batchWriter struct {
	mu       sync.Mutex
	nc       net.Conn
	buf      *[]byte
	batching bool

	direct    bool
	closeSent bool    // direct: a close frame went out; no data frame may follow it
	resumable bool    // see timeout
	rawN      int32   // beside the flags, in what would be padding (see raw below)
	part      *[]byte // direct: the start of a frame coder/websocket is writing in pieces

	// timeout is Options.WriteTimeout: it bounds each write's progress, not the whole batch
	// (see writeAllLocked); 0 leaves the deadline to begin. resumable: a write that timed
	// out after moving bytes may go on (not over TLS, whose state a timeout breaks).
	// cutoff (Unix nanoseconds, 0 for none) is a deadline no write extends: a slow
	// consumer's close gives its stuck write only the close grace.
	timeout time.Duration
	cutoff  atomic.Int64

	guard *frameGuard // the reading side's, kept here (the connection's I/O) to keep Conn small

	// The one-shot, non-blocking write of tryFrame; raw is nil when nc is no socket (TLS).
	raw    syscall.RawConn
	rawFn  func(fd uintptr) bool // w.rawWrite, made once: no allocation per write
	rawBuf *[]byte               // what rawWrite writes (a pointer: 16 bytes less per connection)
	rawErr syscall.Errno         // 0: none (an Errno, not an error: 8 bytes less per connection)
}

func newBatchWriter(nc net.Conn, direct bool) *batchWriter {
	_, isTLS := nc.(*tls.Conn)
	w := &batchWriter{nc: nc, direct: direct, resumable: !isTLS}
	if sc, ok := nc.(syscall.Conn); ok && direct && runtime.GOOS != "windows" {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw, w.rawFn = raw, w.rawWrite
		}
	}
	return w
}

// opClose is the first byte of a close frame (FIN and opcode 8).
const opClose = 0x88

// Write is what coder/websocket's bufio.Writer flushes into. In direct mode those are
// control frames, which may come in pieces (the bufio.Writer is smaller than a frame): a
// piece waits in part until its frame is whole, and only whole frames go on, so that no
// frame of another writer (tryFrame, tryControl, the connection's writer) lands inside one.
func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.direct {
		return w.writeLocked(p)
	}
	if w.part == nil && frameSize(p) == len(p) {
		return w.writeLocked(p) // one whole frame: the usual case
	}
	if w.part == nil {
		w.part = new([]byte)
	}
	b := append(*w.part, p...)
	for {
		n := frameSize(b)
		if n < 0 || n > len(b) {
			break
		}
		if _, err := w.writeLocked(b[:n]); err != nil {
			w.part = nil
			return 0, err
		}
		b = b[:copy(b, b[n:])]
	}
	*w.part = b
	if len(b) == 0 {
		w.part = nil // a close or a pong is rare: no buffer kept for the next
	}
	return len(p), nil
}

// frameSize is the length of the frame b starts with, header and payload; -1 while its
// header is incomplete.
func frameSize(b []byte) int {
	if len(b) < 2 {
		return -1
	}
	n, hdr := int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return -1
		}
		n, hdr = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return -1
		}
		n, hdr = int(binary.BigEndian.Uint64(b[2:])&(1<<62-1)), 10
	}
	if b[1]&0x80 != 0 {
		hdr += 4 // masked (a server's frames are not)
	}
	return hdr + n
}

// writeLocked writes p, whole frames, to the socket or into the batch under way.
func (w *batchWriter) writeLocked(p []byte) (int, error) {
	if w.direct && len(p) > 0 && p[0] == opClose {
		w.closeSent = true
	}
	if !w.batching {
		return w.nc.Write(p)
	}
	b := *w.buf
	if len(b)+len(p) > cap(b) {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= cap(b) {
			if err := w.writeAllLocked(p); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		b = *w.buf
	}
	*w.buf = append(b, p...)
	return len(p), nil
}

func (w *batchWriter) flushLocked() error {
	b := *w.buf
	if len(b) == 0 {
		return nil
	}
	err := w.writeAllLocked(b)
	*w.buf = b[:0]
	return err
}

// writeAllLocked writes p with a deadline per write progress: each write gets timeout from
// its start, and a write that timed out having moved bytes goes on with a fresh one. A peer
// that reads steadily is never cut however long the whole takes; one that takes nothing for
// a whole timeout is.
func (w *batchWriter) writeAllLocked(p []byte) error {
	bufs := net.Buffers{p}
	return w.writeBuffersLocked(&bufs)
}

// writeBuffersLocked is writeAllLocked for several buffers, written with one writev.
func (w *batchWriter) writeBuffersLocked(bufs *net.Buffers) error {
	for {
		if w.timeout > 0 {
			d := time.Now().Add(w.timeout)
			if c := w.cutoff.Load(); c != 0 && c < d.UnixNano() {
				d = time.Unix(0, c)
			}
			_ = w.nc.SetWriteDeadline(d)
		}
		n, err := bufs.WriteTo(w.nc)
		if err == nil || n == 0 || w.timeout <= 0 || !w.resumable || w.cutoff.Load() != 0 ||
			!errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
	}
}

// hurry gives the write under way, and every later one, until deadline at most.
func (w *batchWriter) hurry(deadline time.Time) {
	w.cutoff.Store(deadline.UnixNano())
	_ = w.nc.SetWriteDeadline(deadline)
}

// begin starts a batch and sets the write deadline that bounds its flushes.
func (w *batchWriter) begin(deadline time.Time) {
	w.mu.Lock()
	w.batching = true
	if w.buf == nil {
		w.buf = batchPool.Get().(*[]byte)
	}
	_ = w.nc.SetWriteDeadline(deadline)
	w.mu.Unlock()
}

// flush writes what the batch holds and keeps batching.
func (w *batchWriter) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

// shutSending shuts the socket's sending side (a FIN after what was written), unless a
// batch holds frames not yet written. The drain calls it for a connection failed inside a
// frame, once the close frame went out (see violation.inFrame).
func (w *batchWriter) shutSending() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cw, ok := w.nc.(interface{ CloseWrite() error }); ok && !w.batching {
		_ = cw.CloseWrite()
	}
}

// flushBeforeClose writes what a batch holds, under the writer's deadline.
func (w *batchWriter) flushBeforeClose() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.batching {
		_ = w.flushLocked()
	}
}

// end flushes, returns the buffer to the pool and clears the deadline, so that an idle
// connection holds no buffer and later control frames are not cut by a stale deadline.
func (w *batchWriter) end() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.flushLocked()
	w.batching = false
	if w.buf != nil {
		*w.buf = (*w.buf)[:0]
		batchPool.Put(w.buf)
		w.buf = nil
	}
	_ = w.nc.SetWriteDeadline(time.Time{})
	return err
}

// writePong writes a pong answering a ping with payload p, unless the close frame went
// out: nothing may follow it (RFC 6455 5.5.1). In direct mode only (coder/websocket writes
// only control frames then, each in one Write, so a pong written here never splits a frame).
// Outside a batch, the write is bounded by timeout.
func (w *batchWriter) writePong(p []byte, timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return
	}
	f := append(append(make([]byte, 0, 2+len(p)), 0x80|opcodePong, byte(len(p))), p...)
	if w.batching {
		if len(*w.buf)+len(f) > cap(*w.buf) {
			if w.flushLocked() != nil {
				return
			}
		}
		*w.buf = append(*w.buf, f...)
		return
	}
	_ = w.nc.SetWriteDeadline(time.Now().Add(timeout))
	_, _ = w.nc.Write(f)
	_ = w.nc.SetWriteDeadline(time.Time{})
}

// maxFrameHeader is the longest header of a server's (unmasked) frame.
const maxFrameHeader = 10

// appendFrameHeader appends the header of one final, unmasked data frame of n bytes.
func appendFrameHeader(b []byte, typ websocket.MessageType, n int) []byte {
	b = append(b, 0x80|byte(typ))
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// errCloseSent refuses a data frame after the close frame.
var errCloseSent = errors.New("wsserver: close frame already sent")

// writeFrame adds one data frame to the batch, flushing first when it does not fit; a
// frame larger than the buffer goes out at once, header and payload in one writev. Call it
// only between begin and end, in direct mode.
func (w *batchWriter) writeFrame(typ websocket.MessageType, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent {
		return errCloseSent
	}
	need := maxFrameHeader + len(data)
	if len(*w.buf)+need > cap(*w.buf) {
		if err := w.flushLocked(); err != nil {
			return err
		}
		if need > cap(*w.buf) {
			var hdr [maxFrameHeader]byte
			bufs := net.Buffers{appendFrameHeader(hdr[:0], typ, len(data)), data}
			return w.writeBuffersLocked(&bufs)
		}
	}
	*w.buf = append(appendFrameHeader(*w.buf, typ, len(data)), data...)
	return nil
}

// Outcomes of tryFrame.
const (
	frameNotSent = iota // nothing written: the writer goroutine must send it
	frameSent           // the whole frame is in the socket
	framePart           // part of it is: the rest waits in a batch begun here, for the writer
)

// tryFrame makes one non-blocking attempt to write a data frame straight to the socket,
// outside a batch, from the caller's goroutine. It does nothing (frameNotSent) when the
// socket is not raw, a batch or another write is under way, the frame is larger than a
// batch buffer, or the socket's buffer is full; an error is the socket's (or
// errCloseSent).
func (w *batchWriter) tryFrame(typ websocket.MessageType, data []byte) (int, error) {
	if w.raw == nil || maxFrameHeader+len(data) > batchBufSize || !w.mu.TryLock() {
		return frameNotSent, nil
	}
	defer w.mu.Unlock()
	if w.closeSent {
		return frameNotSent, errCloseSent
	}
	if w.batching {
		return frameNotSent, nil
	}
	bp := batchPool.Get().(*[]byte)
	b := append(appendFrameHeader((*bp)[:0], typ, len(data)), data...)
	*bp = b
	w.rawBuf, w.rawN, w.rawErr = bp, 0, 0
	err := w.raw.Write(w.rawFn)
	n := int(w.rawN)
	if err == nil && w.rawErr != 0 && w.rawErr != syscall.EAGAIN {
		err = w.rawErr
	}
	w.rawBuf = nil
	switch {
	case err != nil || n == 0:
		*bp = b[:0]
		batchPool.Put(bp)
		return frameNotSent, err
	case n == len(b):
		*bp = b[:0]
		batchPool.Put(bp)
		return frameSent, nil
	default:
		// The rest must go before any other frame: it starts a batch that the connection's
		// writer goes on with (its begin keeps the buffer, its end flushes it).
		*bp = append(b[:0], b[n:]...)
		w.buf, w.batching = bp, true
		return framePart, nil
	}
}

// Outcomes of tryControl.
const (
	ctlSent        = iota // the frame is written (or in the batch under way)
	ctlBusy               // another write holds the socket, or it is full, or closing
	ctlUnsupported        // not a raw socket, or coder/websocket frames the data
)

// tryControl writes a small control frame without waiting: straight to the socket, or into
// the batch a writer is filling. It never interleaves with another frame: in direct mode
// every frame is written whole under mu. frame is a pointer (the sweep's ping, a package
// variable) so that handing it to rawWrite allocates nothing.
func (w *batchWriter) tryControl(fp *[]byte) int {
	frame := *fp
	if w.raw == nil || !w.direct {
		return ctlUnsupported
	}
	if !w.mu.TryLock() {
		return ctlBusy
	}
	defer w.mu.Unlock()
	if w.closeSent {
		return ctlBusy
	}
	if w.batching {
		*w.buf = append(*w.buf, frame...)
		return ctlSent
	}
	w.rawBuf, w.rawN, w.rawErr = fp, 0, 0
	err := w.raw.Write(w.rawFn)
	n := int(w.rawN)
	w.rawBuf = nil
	switch {
	case err != nil || n == 0:
		return ctlBusy
	case n < len(frame):
		// A socket with room for part of two bytes: finish under a short deadline.
		_ = w.nc.SetWriteDeadline(time.Now().Add(closeGrace))
		_, _ = w.nc.Write(frame[n:])
		_ = w.nc.SetWriteDeadline(time.Time{})
	}
	return ctlSent
}

// rawWrite is one write(2) of rawBuf on the socket; it never waits for the socket.
func (w *batchWriter) rawWrite(fd uintptr) bool {
	for {
		n, err := nbWrite(fd, *w.rawBuf)
		if err == syscall.EINTR {
			continue
		}
		w.rawN, w.rawErr = int32(max(n, 0)), 0
		if err != nil {
			w.rawErr = syscall.EIO
			if e, ok := err.(syscall.Errno); ok {
				w.rawErr = e
			}
		}
		return true
	}
}

// sysRead calls read with fd as the descriptor type of the platform.
func sysRead[H ~int | ~uintptr](read func(H, []byte) (int, error), fd uintptr, p []byte) (int, error) {
	return read(H(fd), p)
}
