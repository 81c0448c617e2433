package wsserver

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// hijackWriter wraps the ResponseWriter that coder/websocket's Accept hijacks, to hand it
// buffers sized for an idle connection instead of net/http's 4 KiB + 4 KiB:
//   - a small read buffer (Options.ReadBufferSize): a frame header and a small message fit;
//     a bigger payload is read straight into the message;
//   - a 128-byte write buffer, enough for any control frame (pong, close) in one write,
//     over a batchWriter that coalesces a burst of data frames into one system call and
//     holds a pooled buffer only while the connection's writer runs.
//
// It also records the status of a refused handshake for the Observer.
type hijackWriter struct {
	http.ResponseWriter
	readSize int
	status   int
	nc       net.Conn
	bw       *batchWriter
}

// controlFrameMax is the largest control frame a server writes: 2 header bytes and 125.
const controlFrameMax = 128

func (h *hijackWriter) WriteHeader(code int) {
	h.status = code
	h.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (h *hijackWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Hijack takes the connection from net/http and drops net/http's buffers. Bytes the client
// sent right after its request (net/http may have read one already) must end up buffered
// in the reader we return: Accept keeps what is buffered and then reads from the net.Conn.
func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	var br *bufio.Reader
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc), max(h.readSize, n))
		if _, err := br.Peek(n); err != nil {
			_ = nc.Close()
			return nil, nil, err
		}
	} else {
		br = bufio.NewReaderSize(nc, h.readSize)
	}
	h.nc = nc
	h.bw = &batchWriter{nc: nc}
	return flushingConn{nc, h.bw}, bufio.NewReadWriter(br, bufio.NewWriterSize(h.bw, controlFrameMax)), nil
}

// flushingConn is the net.Conn coder/websocket closes. A control frame its reader writes
// (the echo of the peer's close) may land in the writer's batch; coder closes the socket
// right after writing it, so Close flushes the batch first.
type flushingConn struct {
	net.Conn
	bw *batchWriter
}

func (c flushingConn) Close() error {
	c.bw.flushBeforeClose()
	return c.Conn.Close()
}

// batchBufSize is the pooled buffer a writer coalesces frames into.
const batchBufSize = 16 << 10

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}

// batchWriter sits under coder/websocket's bufio.Writer. Outside a batch it writes through
// (control frames written by the reader or a ping). While the connection's writer runs a
// batch, frames collect in a pooled buffer and go out in one write at flush, under the
// write deadline the writer set.
type batchWriter struct {
	mu       sync.Mutex
	nc       net.Conn
	buf      *[]byte
	batching bool
}

func (w *batchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.batching {
		return w.nc.Write(p)
	}
	b := *w.buf
	if len(b)+len(p) > cap(b) {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= cap(b) {
			return w.nc.Write(p)
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
	_, err := w.nc.Write(b)
	*w.buf = b[:0]
	return err
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
