package main

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// abClient is a WebSocket client that speaks as Autobahn|Testsuite's fuzzing client does: it
// sends its upgrade request, then frames exactly as a case builds them (any opcode, flags
// and length, masked with a key from a seeded generator), written in one piece, one write
// per frame, or chopped into writes of a few bytes; and it reads what the server sends
// frame by frame, checking it as Autobahn's client would (unmasked frames, known opcodes,
// UTF-8 text, permessage-deflate as negotiated).
type abClient struct {
	t    testing.TB
	nc   net.Conn
	br   *bufio.Reader
	rng  *rand.Rand
	wait time.Duration // how long any read or write may wait before the case fails

	deflate   *deflateParams // negotiated permessage-deflate; nil: none
	compress  *flate.Writer  // the client's compressor (kept across messages with context takeover)
	cbuf      bytes.Buffer
	window    []byte // the server's last 32 KiB of compressed-message output (its context)
	inflated  int    // compressed messages received
	closeSent bool   // a close frame was written
}

// Frame opcodes.
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xa
)

// A frame is one WebSocket frame as the client builds it, valid or not.
type frame struct {
	op      byte
	more    bool // FIN clear: the message goes on in the next frame
	rsv     byte // RSV bits as Autobahn numbers them: 4 is RSV1, 2 RSV2, 1 RSV3
	payload []byte
	closing bool // a close frame that starts (or answers) the close handshake, not just bytes
}

func textFrame(s string) frame   { return frame{op: opText, payload: []byte(s)} }
func binaryFrame(b []byte) frame { return frame{op: opBinary, payload: b} }
func pingFrame(s string) frame   { return frame{op: opPing, payload: []byte(s)} }
func pongFrame(s string) frame   { return frame{op: opPong, payload: []byte(s)} }

// first and cont are the frames of a fragmented message: its first frame (opcode op) and the
// continuations, fin on the last.
func first(op byte, s string) frame { return frame{op: op, more: true, payload: []byte(s)} }
func cont(s string, fin bool) frame { return frame{op: opCont, more: !fin, payload: []byte(s)} }

// closeFrame is the close frame of Autobahn's sendClose: it starts the close handshake
// (a frame{op: opClose} is only bytes on the wire, as Autobahn's sendFrame(opcode=8)).
func closeFrame(code int, r string) frame {
	return frame{op: opClose, payload: closePayload(code, r), closing: true}
}

// closePayload is a close frame's payload: the code (none if negative) and the reason.
func closePayload(code int, reason string) []byte {
	if code < 0 {
		return []byte(reason)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// fragments splits a message into frames of size bytes (one empty frame for an empty message).
func fragments(op byte, payload []byte, size int) []frame {
	var fs []frame
	for i := 0; i == 0 || i < len(payload); i += size {
		j := min(i+size, len(payload))
		f := frame{op: opCont, more: j < len(payload), payload: payload[i:j]}
		if i == 0 {
			f.op = op
		}
		fs = append(fs, f)
	}
	return fs
}

// bytes returns the frame on the wire: masked with the next key of the client's generator.
func (c *abClient) bytes(f frame) []byte {
	b := c.header(f.op, !f.more, f.rsv, len(f.payload))
	mask := b[len(b)-4:]
	h := len(b)
	b = append(b, f.payload...)
	for i := range f.payload {
		b[h+i] ^= mask[i&3]
	}
	if f.closing {
		c.closeSent = true
	}
	return b
}

// header returns a frame's header for a payload of n bytes, ending with its mask key, the
// next of the client's generator.
func (c *abClient) header(op byte, fin bool, rsv byte, n int) []byte {
	b0 := op&0x0f | (rsv&7)<<4
	if fin {
		b0 |= 0x80
	}
	b := []byte{b0}
	switch {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	return binary.BigEndian.AppendUint32(b, c.rng.Uint32())
}

// send writes the frames in one write, as Autobahn's client does with frames a case sends
// one after the other (its transport buffers them into one send).
func (c *abClient) send(fs ...frame) {
	c.t.Helper()
	var b []byte
	for _, f := range fs {
		b = append(b, c.bytes(f)...)
	}
	c.write(b)
}

// sendEach writes each frame in a write of its own (Autobahn's sync = True).
func (c *abClient) sendEach(fs ...frame) {
	c.t.Helper()
	for _, f := range fs {
		c.write(c.bytes(f))
	}
}

// sendChopped writes each frame in writes of n bytes (Autobahn's chopsize).
func (c *abClient) sendChopped(n int, fs ...frame) {
	c.t.Helper()
	for _, f := range fs {
		b := c.bytes(f)
		for i := 0; i < len(b); i += n {
			c.write(b[i:min(i+n, len(b))])
		}
	}
}

func (c *abClient) write(b []byte) {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetWriteDeadline(time.Now().Add(c.wait)))
	_, err := c.nc.Write(b)
	require.NoError(c.t, err, "write")
}

// An event is what the server sent, as Autobahn records it: a whole message, a ping or a
// pong. A close frame ends the events (see closeSeen).
type event struct {
	kind   string // "message", "ping", "pong"
	binary bool
	data   string
}

func msgEvent(s string) event  { return event{kind: "message", data: s} }
func binEvent(b []byte) event  { return event{kind: "message", binary: true, data: string(b)} }
func pongEvent(s string) event { return event{kind: "pong", data: s} }
func (e event) String() string {
	d := e.data
	if len(d) > 40 {
		d = fmt.Sprintf("%s... (%d bytes)", d[:40], len(e.data))
	}
	if e.binary {
		return fmt.Sprintf("%s(binary %q)", e.kind, d)
	}
	return fmt.Sprintf("%s(%q)", e.kind, d)
}

// closeSeen is the server's close frame: code 0 when it had no payload.
type closeSeen struct {
	code   int
	reason string
}

// errServerClosed is next's error when the stream ended (the server closed the TCP
// connection, or reset it).
var errServerClosed = errors.New("the server closed the TCP connection")

// next reads the server's next event: an event, or its close frame (cl non-nil), or an
// error: errServerClosed when the TCP connection ended, or the first thing the server
// sent that Autobahn's client would fail the connection for (a protocol error).
func (c *abClient) next() (ev event, cl *closeSeen, err error) {
	var msg []byte
	var msgOp byte
	var compressed, inMsg bool
	for {
		fin, rsv, op, payload, err := c.readFrame()
		if err != nil {
			return event{}, nil, err
		}
		switch op {
		case opPing, opPong:
			if !fin || len(payload) > 125 || rsv != 0 {
				return event{}, nil, fmt.Errorf("server sent a bad control frame (fin %v, %d bytes, rsv %d)", fin, len(payload), rsv)
			}
			kind := "ping"
			if op == opPong {
				kind = "pong"
			}
			return event{kind: kind, data: string(payload)}, nil, nil
		case opClose:
			if !fin || len(payload) > 125 || rsv != 0 || len(payload) == 1 {
				return event{}, nil, fmt.Errorf("server sent a bad close frame (fin %v, % x)", fin, payload)
			}
			cs := &closeSeen{}
			if len(payload) >= 2 {
				cs.code = int(binary.BigEndian.Uint16(payload))
				cs.reason = string(payload[2:])
				if !sendableCode(cs.code) {
					return event{}, nil, fmt.Errorf("server closed with code %d, which no endpoint may send", cs.code)
				}
				if !utf8.ValidString(cs.reason) {
					return event{}, nil, fmt.Errorf("server's close reason is not UTF-8: % x", payload[2:])
				}
			}
			return event{}, cs, nil
		case opText, opBinary:
			if inMsg {
				return event{}, nil, fmt.Errorf("server began a message inside another")
			}
			inMsg, msgOp, msg = true, op, append(msg[:0], payload...)
			compressed = rsv == 4 && c.deflate != nil
			if rsv != 0 && !compressed {
				return event{}, nil, fmt.Errorf("server set RSV bits %d", rsv)
			}
		case opCont:
			if !inMsg || rsv != 0 {
				return event{}, nil, fmt.Errorf("server sent a continuation frame out of place (rsv %d)", rsv)
			}
			msg = append(msg, payload...)
		default:
			return event{}, nil, fmt.Errorf("server used reserved opcode %d", op)
		}
		if !fin {
			continue
		}
		if compressed {
			if msg, err = c.inflate(msg); err != nil {
				return event{}, nil, err
			}
		}
		if msgOp == opText && !utf8.Valid(msg) {
			return event{}, nil, fmt.Errorf("server sent a text message that is not UTF-8")
		}
		return event{kind: "message", binary: msgOp == opBinary, data: string(msg)}, nil, nil
	}
}

// sendableCode reports whether an endpoint may put code in a close frame, as Autobahn's
// client judges it (1012-1014 and 1015 not included).
func sendableCode(code int) bool {
	return code >= 1000 && code <= 1003 || code >= 1007 && code <= 1011 || code >= 3000 && code <= 4999
}

// readFrame reads one server frame.
func (c *abClient) readFrame() (fin bool, rsv, op byte, payload []byte, err error) {
	fin, rsv, op, n, err := c.readHeader()
	if err != nil {
		return false, 0, 0, nil, err
	}
	if n > 64<<20 {
		return false, 0, 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return false, 0, 0, nil, readErr(err)
	}
	return fin, rsv, op, payload, nil
}

// readHeader reads a server frame's header; the payload's n bytes follow in c.br.
func (c *abClient) readHeader() (fin bool, rsv, op byte, n uint64, err error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(c.wait)); err != nil {
		return false, 0, 0, 0, err
	}
	var h [10]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return false, 0, 0, 0, readErr(err)
	}
	fin, rsv, op = h[0]&0x80 != 0, h[0]>>4&7, h[0]&0x0f
	if h[1]&0x80 != 0 {
		return false, 0, 0, 0, errors.New("server sent a masked frame")
	}
	n = uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, h[2:4]); err != nil {
			return false, 0, 0, 0, readErr(err)
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(c.br, h[2:10]); err != nil {
			return false, 0, 0, 0, readErr(err)
		}
		n = binary.BigEndian.Uint64(h[2:10])
	}
	return fin, rsv, op, n, nil
}

// readErr tells the end of the stream (or a reset) from a timeout.
func readErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return fmt.Errorf("%w (%v)", errServerClosed, err)
}

// deflateParams is the permessage-deflate the server accepted (RFC 7692).
type deflateParams struct {
	clientNoContext bool // client_no_context_takeover: the client compresses each message afresh
	serverNoContext bool // server_no_context_takeover: so does the server
}

// abHandshake is the upgrade request Autobahn|Testsuite's fuzzing client (autobahn 0.10.9)
// sends, header for header and in its order: no Origin (unless its spec sets one), the host
// with its port, "Upgrade: WebSocket" in that case, and the permessage-deflate offers of
// the 12.x and 13.x cases.
func abHandshake(path, host, key, origin string, offers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", path)
	b.WriteString("User-Agent: AutobahnTestSuite/0.8.2-0.10.9\r\n")
	fmt.Fprintf(&b, "Host: %s\r\n", host)
	b.WriteString("Upgrade: WebSocket\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n")
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\n", key)
	if origin != "" {
		fmt.Fprintf(&b, "Origin: %s\r\n", origin)
	}
	if len(offers) > 0 {
		fmt.Fprintf(&b, "Sec-WebSocket-Extensions: %s\r\n", strings.Join(offers, ", "))
	}
	b.WriteString("Sec-WebSocket-Version: 13\r\n\r\n")
	return b.String()
}

// dialOptions are what a case changes in the connection.
type dialOptions struct {
	path   string   // the request's path; "/ws" when empty
	origin string   // an Origin header; none when empty
	offers []string // permessage-deflate offers, in the client's order
	early  []frame  // frames sent in the same write as the upgrade request (not Autobahn's)
}

// dialAB connects to addr and upgrades as Autobahn's client does; it fails the test unless
// the server answers as Autobahn requires (101, the right Sec-WebSocket-Accept, at most one
// extension it offered).
func dialAB(t testing.TB, addr string, seed uint64, wait time.Duration, o dialOptions) *abClient {
	t.Helper()
	c, resp := dialRaw(t, addr, seed, wait, o)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, "the upgrade is refused: %s", resp.Status)
	return c
}

// dialRaw sends the upgrade request and returns the client and the server's response,
// checked as Autobahn checks a 101.
func dialRaw(t testing.TB, addr string, seed uint64, wait time.Duration, o dialOptions) (*abClient, *http.Response) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, wait)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	c := &abClient{t: t, nc: nc, br: bufio.NewReader(nc), rng: rand.New(rand.NewPCG(seed, 0x5eed)), wait: wait}
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:], c.rng.Uint64())
	binary.LittleEndian.PutUint64(k[8:], c.rng.Uint64())
	key := base64.StdEncoding.EncodeToString(k[:])
	path := o.path
	if path == "" {
		path = "/ws"
	}
	req := []byte(abHandshake(path, addr, key, o.origin, o.offers))
	for _, f := range o.early {
		req = append(req, c.bytes(f)...)
	}
	c.write(req)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(wait)))
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err, "reading the upgrade response")
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return c, resp
	}
	require.Equal(t, "HTTP/1.1", resp.Proto)
	require.True(t, strings.EqualFold(strings.TrimSpace(resp.Header.Get("Upgrade")), "websocket"), "Upgrade: %q", resp.Header.Get("Upgrade"))
	require.True(t, headerHasToken(resp.Header, "Connection", "upgrade"), "Connection: %q", resp.Header.Get("Connection"))
	require.Len(t, resp.Header.Values("Sec-WebSocket-Accept"), 1)
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	require.Equal(t, base64.StdEncoding.EncodeToString(sum[:]), resp.Header.Get("Sec-WebSocket-Accept"))
	require.Empty(t, resp.Header.Get("Sec-WebSocket-Protocol"), "no subprotocol was asked for")
	exts := resp.Header.Values("Sec-WebSocket-Extensions")
	require.LessOrEqual(t, len(exts), 1, "Sec-WebSocket-Extensions more than once")
	if len(exts) == 1 {
		require.NotEmpty(t, o.offers, "the server chose an extension the client did not offer: %q", exts[0])
		c.deflate = parseDeflateResponse(t, exts[0], o.offers)
	}
	return c, resp
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// parseDeflateResponse parses the server's permessage-deflate response as Autobahn's
// client does (one configuration, only the four parameters of RFC 7692, each once, window
// bits 8-15), and requires it to answer one of the offers: server_no_context_takeover or
// server_max_window_bits only if asked for, client_* only if offered.
func parseDeflateResponse(t testing.TB, ext string, offers []string) *deflateParams {
	t.Helper()
	parts := strings.Split(ext, ";")
	require.Equal(t, "permessage-deflate", strings.TrimSpace(parts[0]), "extension %q", ext)
	p := &deflateParams{}
	seen := map[string]bool{}
	for _, part := range parts[1:] {
		name, val, hasVal := strings.Cut(strings.TrimSpace(part), "=")
		require.False(t, seen[name], "parameter %s twice in %q", name, ext)
		seen[name] = true
		switch name {
		case "client_no_context_takeover", "server_no_context_takeover":
			require.False(t, hasVal, "%s takes no value", name)
		case "client_max_window_bits", "server_max_window_bits":
			bits, err := strconv.Atoi(strings.Trim(val, `"`))
			require.True(t, err == nil && bits >= 8 && bits <= 15, "%s=%s", name, val)
			require.Equal(t, 15, bits, "this client's compress/flate needs a 32 KiB window")
		default:
			t.Fatalf("illegal permessage-deflate parameter %q in %q", name, ext)
		}
	}
	p.clientNoContext = seen["client_no_context_takeover"]
	p.serverNoContext = seen["server_no_context_takeover"]
	// It answers an offer when it has only what that offer allows, and (RFC 7692 7.1.1.1)
	// server_no_context_takeover if the offer asked for it.
	answers := false
	for _, o := range offers {
		asked := func(s string) bool { return strings.Contains(o, s) }
		answers = answers || (p.serverNoContext == asked("server_no_context_takeover")) &&
			(!seen["server_max_window_bits"] || asked("server_max_window_bits")) &&
			(!p.clientNoContext || asked("client_no_context_takeover")) &&
			(!seen["client_max_window_bits"] || asked("client_max_window_bits"))
	}
	require.True(t, answers, "response %q answers none of the offers %q", ext, offers)
	return p
}

// sendMessage sends a whole message as Autobahn's sendMessage does: compressed when
// permessage-deflate is on, in frames of fragSize bytes (0: one frame).
func (c *abClient) sendMessage(op byte, payload []byte, fragSize int) {
	c.t.Helper()
	rsv := byte(0)
	if c.deflate != nil {
		payload = c.deflateMessage(payload)
		rsv = 4
	}
	if fragSize <= 0 {
		fragSize = max(len(payload), 1)
	}
	fs := fragments(op, payload, fragSize)
	fs[0].rsv = rsv
	c.send(fs...)
}

// deflateMessage compresses one message (RFC 7692 7.2.1: a sync flush, its 4-byte tail
// removed), afresh when the server asked for client_no_context_takeover.
func (c *abClient) deflateMessage(p []byte) []byte {
	c.t.Helper()
	c.cbuf.Reset()
	switch {
	case c.compress == nil:
		w, err := flate.NewWriter(&c.cbuf, flate.BestSpeed)
		require.NoError(c.t, err)
		c.compress = w
	case c.deflate.clientNoContext:
		c.compress.Reset(&c.cbuf) // as new: no reference to earlier messages
	}
	_, err := c.compress.Write(p)
	require.NoError(c.t, err)
	require.NoError(c.t, c.compress.Flush())
	out := c.cbuf.Bytes()
	require.True(c.t, bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}))
	return bytes.Clone(out[:len(out)-4])
}

// inflate decompresses a compressed message of the server's: with its last 32 KiB of
// output as the dictionary unless it said server_no_context_takeover (a server that then
// refers back to an earlier message fails here).
func (c *abClient) inflate(p []byte) ([]byte, error) {
	var dict []byte
	if !c.deflate.serverNoContext {
		dict = c.window
	}
	// The tail the sender removed, then an empty final stored block, so that the reader
	// ends cleanly instead of waiting for more.
	in := append(append(bytes.Clone(p), 0, 0, 0xff, 0xff), 1, 0, 0, 0xff, 0xff)
	r := flate.NewReaderDict(bytes.NewReader(in), dict)
	out, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("server's compressed message does not inflate: %w", err)
	}
	c.inflated++
	if !c.deflate.serverNoContext {
		c.window = append(c.window, out...)
		if len(c.window) > 32<<10 {
			c.window = bytes.Clone(c.window[len(c.window)-32<<10:])
		}
	}
	return out, nil
}

// sendStream sends a message of n bytes of pattern (repeated) in frames of fr bytes (0: one
// frame), masking as it goes, in writes of chop bytes (0: 64 KiB at most): a 16 MiB message
// is never whole in memory.
func (c *abClient) sendStream(op byte, pattern string, n, fr, chop int) {
	c.t.Helper()
	if fr <= 0 {
		fr = max(n, 1)
	}
	rep := repeat(pattern, 64<<10+len(pattern))
	buf := make([]byte, 0, 64<<10)
	flush := func() {
		for i := 0; i < len(buf); {
			j := len(buf)
			if chop > 0 {
				j = min(i+chop, j)
			}
			c.write(buf[i:j])
			i = j
		}
		buf = buf[:0]
	}
	for off := 0; off == 0 || off < n; off += fr {
		l := min(fr, n-off)
		fop := op
		if off > 0 {
			fop = opCont
		}
		if len(buf)+14 > cap(buf) {
			flush()
		}
		buf = append(buf, c.header(fop, off+l == n, 0, l)...)
		key := [4]byte(buf[len(buf)-4:])
		for i := 0; i < l; {
			if len(buf) == cap(buf) {
				flush()
			}
			k := min(l-i, cap(buf)-len(buf))
			start := len(buf)
			buf = append(buf, rep[(off+i)%len(pattern):][:k]...)
			maskAt(buf[start:], key, i)
			i += k
		}
	}
	flush()
}

// maskAt masks b, the payload's bytes from offset pos, with key (a word at a time).
func maskAt(b []byte, key [4]byte, pos int) {
	var k8 [8]byte
	for i := range k8 {
		k8[i] = key[(pos+i)&3]
	}
	w := binary.LittleEndian.Uint64(k8[:])
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^w)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[(pos+i)&3]
	}
}

// expectStream reads the server's next message and requires it to be of type op and to hold
// n bytes of pattern (repeated), comparing as it reads; a ping or a pong before it fails.
func (c *abClient) expectStream(op byte, pattern string, n int) {
	c.t.Helper()
	rep := repeat(pattern, 64<<10+len(pattern))
	off := 0
	for first := true; ; first = false {
		fin, rsv, fop, l, err := c.readHeader()
		require.NoError(c.t, err, "reading the echo of a %d-byte message, %d bytes in", n, off)
		if first {
			require.Equal(c.t, op, fop, "the echo's opcode")
		} else {
			require.Equal(c.t, byte(opCont), fop, "a continuation frame of the echo")
		}
		require.Zero(c.t, rsv)
		require.LessOrEqual(c.t, off+int(l), n, "the echo is longer than the message")
		buf := make([]byte, min(l, 64<<10))
		for left := int(l); left > 0; {
			k := min(left, len(buf))
			require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(c.wait)))
			_, err := io.ReadFull(c.br, buf[:k])
			require.NoError(c.t, err, "reading the echo, %d bytes in", off)
			if !bytes.Equal(buf[:k], []byte(rep[off%len(pattern):][:k])) {
				require.FailNow(c.t, "the echo differs", "in bytes %d-%d", off, off+k)
			}
			off += k
			left -= k
		}
		if fin {
			require.Equal(c.t, n, off, "the echo's length")
			return
		}
	}
}
