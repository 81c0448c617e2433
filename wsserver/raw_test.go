package wsserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawClient speaks WebSocket frame by frame over a plain connection, to send what a library
// would refuse to (bad frames, pings at the wrong time) and to see exactly what the server
// writes.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// Frame opcodes, first byte bits.
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opCloseF = 0x8
	opPing   = 0x9
	opPong   = 0xa
	finBit   = 0x80
)

// rawDial connects to url's host over TCP and upgrades by hand.
func rawDial(t testing.TB, url string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "ws://"), wait)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return rawHandshake(t, nc)
}

// rawHandshake sends the upgrade request on nc and reads the 101.
func rawHandshake(t testing.TB, nc net.Conn) *rawClient {
	t.Helper()
	_, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(wait)))
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return c
}

// frameBytes builds one masked client frame; b0 is FIN, RSV bits and opcode.
func frameBytes(b0 byte, payload []byte) []byte {
	b := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key[:]...)
	for i, x := range payload {
		b = append(b, x^key[i%4])
	}
	return b
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// send writes frames in one write.
func (c *rawClient) send(frames ...[]byte) {
	c.t.Helper()
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	require.NoError(c.t, c.nc.SetWriteDeadline(time.Now().Add(wait)))
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

// next reads one server frame (unmasked) within wait.
func (c *rawClient) next() (op byte, payload []byte, err error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return 0, nil, err
	}
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	if h[0]&0x70 != 0 || h[0]&finBit == 0 {
		return 0, nil, errors.New("unexpected server frame flags")
	}
	return h[0] & 0x0f, payload, nil
}

// read returns the next frame, failing the test on an error.
func (c *rawClient) read() (byte, []byte) {
	c.t.Helper()
	op, p, err := c.next()
	require.NoError(c.t, err)
	return op, p
}

// echoed sends msg as one text frame and requires it back in the server's next frame.
func (c *rawClient) echoed(msg string) {
	c.t.Helper()
	c.send(clientFrame(true, opText, []byte(msg)))
	op, p := c.read()
	require.Equal(c.t, byte(opText), op)
	require.Equal(c.t, msg, string(p))
}

// expectClose reads until the server's close frame and returns its code (1005 for none),
// failing on a data frame.
func (c *rawClient) expectClose() (int, string) {
	c.t.Helper()
	for {
		op, p := c.read()
		switch op {
		case opCloseF:
			if len(p) < 2 {
				return 1005, ""
			}
			return int(binary.BigEndian.Uint16(p)), string(p[2:])
		case opPing, opPong:
			continue
		default:
			c.t.Fatalf("want the close frame, got opcode %d %q", op, p)
		}
	}
}

// expectEOF reads until the server closes the TCP connection; a reset fails.
func (c *rawClient) expectEOF() {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(wait)))
	_, err := io.Copy(io.Discard, c.br)
	require.NoError(c.t, err, "want a clean end of stream (FIN), not a reset or a timeout")
}

// pipeListener is a net.Listener over net.Pipe, for http.Server inside a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial returns the client's end of a new connection.
func (l *pipeListener) dial() net.Conn {
	a, b := net.Pipe()
	l.conns <- b
	return a
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
