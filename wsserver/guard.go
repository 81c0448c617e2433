package wsserver

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// frameGuard sits under coder/websocket's reader, between the socket and the bufio.Reader
// handed to it, and checks every frame the peer sends as its bytes arrive (RFC 6455 5-7):
// reserved bits and opcodes, masking, fragmentation (a continuation with nothing to
// continue, a new message inside a fragmented one), control frames (fragmented, over 125
// bytes), close frames (a 1-byte payload, a code no peer may send, a reason that is not
// UTF-8), the UTF-8 of uncompressed text messages (incrementally, across fragments: it fails
// at the first byte that cannot be part of valid UTF-8), and the rate limit, which counts
// frames, so that a message that never ends cannot bypass it.
//
// coder/websocket checks part of this itself, but writes its close frame at once from the
// reader (the messages read before, and what their handlers send, are lost) and reports a
// lost connection. The guard instead stops the byte stream right before the bad frame: the
// library delivers everything before it, then reads the guard's *violation as a read
// error, and the reader closes the connection in order (Conn.fail). Later reads (the close
// handshake's) discard the input up to the peer's close frame, so that the socket closes
// with nothing unread: no reset that could destroy the close frame at the peer.
type frameGuard struct {
	src        io.Reader
	allow      func() bool // the rate limit, per frame; nil: none
	fail       *violation  // the first violation; reads drain once it was reported
	ctl        *[125]byte  // a close frame's payload, unmasked; made for the first one
	left       int64       // payload bytes left in the current frame
	hdr        [14]byte    // the current frame's header; its last 4 bytes are the mask key
	hlen, need uint8       // header bytes collected, and the header's length (2 until known)
	op         byte
	kpos       uint8 // mask offset in the current frame's payload, mod 4
	clen       uint8
	compressed bool       // permessage-deflate: RSV1 may mark a message's first frame
	flags      guardFlags // the guard's state bits, in one byte: every idle connection has a guard
	utf        utf8State  // the UTF-8 check of a text message (flag gText)

	closeWait chan struct{} // Conn.fail waits on it for the close handshake; under Conn.mu
}

// guardFlags are a frameGuard's state bits.
type guardFlags uint8

const (
	gInMsg     guardFlags = 1 << iota // a fragmented data message is under way
	gText                             // the message is uncompressed text: its UTF-8 is checked here
	gClosed                           // the peer's close frame went by: what follows is not checked
	gReported                         // fail was returned once: reads drain from then on
	gDrained                          // the drain is done
	gPeerClose                        // the bad frame was the peer's close frame: nothing to drain
	gDenied                           // takeMessage found the rate limit spent: the frame's checkStart says so
)

func (g *frameGuard) is(f guardFlags) bool { return g.flags&f != 0 }

func (g *frameGuard) set(f guardFlags, on bool) {
	if on {
		g.flags |= f
	} else {
		g.flags &^= f
	}
}

// boundary reports whether the bytes scanned so far end a whole message (or are none),
// with no violation found: the readiness transport's reader may then be told "would
// block" (pollConn.read). A control frame inside a fragmented message is not a boundary.
// The guard parses every frame header anyway: the transport needs no parser of its own.
func (g *frameGuard) boundary() bool { return g.need == 0 && g.fail == nil && !g.is(gInMsg) }

// fin reports whether the current frame ends its message (its header's FIN bit).
func (g *frameGuard) fin() bool { return g.hdr[0]&0x80 != 0 }

// mask returns the current frame's mask key, the last 4 bytes of its complete header.
func (g *frameGuard) mask() [4]byte { return [4]byte(g.hdr[g.need-4 : g.need]) }

// A violation is the read error the guard reports for a frame the peer must not send, with
// the close code and the cause the connection ends with.
type violation struct {
	code    websocket.StatusCode
	reason  string
	cause   error
	why     string
	pending []byte // what the guard read after it, for the drain
	// inFrame: the bad byte is inside a frame's payload. A peer that fails fast abandons
	// the frame and sends its close frame where the payload would go on, so the drain may
	// never find it: the drain, which runs once the close frame went out, calls shut (set
	// by Conn.fail) to shut the sending side, and the peer's end of the stream ends it.
	inFrame bool
	shut    func()
}

func (v *violation) Error() string { return fmt.Sprintf("wsserver: %s (%d)", v.reason, int(v.code)) }

func protocolError(format string, args ...any) *violation {
	return &violation{code: websocket.StatusProtocolError, reason: fmt.Sprintf(format, args...), cause: ErrProtocol, why: ReasonProtocol}
}

// Frame opcodes.
const (
	opcodeCont  = 0x0
	opcodeText  = 0x1
	opcodeBin   = 0x2
	opcodeClose = 0x8
	opcodePing  = 0x9
	opcodePong  = 0xa
)

func (g *frameGuard) Read(p []byte) (int, error) {
	if g.fail != nil {
		if !g.is(gReported) {
			g.set(gReported, true)
			return 0, g.fail
		}
		return 0, g.drain()
	}
	n, err := g.src.Read(p)
	k := g.scan(p[:n])
	if g.fail == nil {
		return n, err
	}
	g.fail.pending = append(g.fail.pending[:0], p[k:n]...)
	if k > 0 {
		return k, nil // what came before the bad byte; the error comes next
	}
	g.set(gReported, true)
	return 0, g.fail
}

// failNow records a violation found above the guard (a compressed text message whose UTF-8
// is checked once inflated): later reads drain.
func (g *frameGuard) failNow(v *violation) {
	if g.fail == nil {
		g.fail = v
		g.set(gReported, true)
	}
}

// scan checks b and returns how many of its bytes may pass: len(b), or the offset of the
// byte that revealed a violation (g.fail is then set).
func (g *frameGuard) scan(b []byte) int {
	i := 0
	for i < len(b) && g.fail == nil {
		if g.is(gClosed) {
			return len(b)
		}
		if g.need == 0 || g.hlen < g.need {
			i += g.header(b[i:])
			if g.fail != nil {
				// The header's last byte taken revealed it: the drain parses on from that
				// byte, which goes back into the pending input.
				g.hlen--
				g.need = 2
				if g.hlen >= 2 {
					g.need = headerLen(g.hdr[1])
				}
				return i - 1
			}
			continue
		}
		n := int(min(g.left, int64(len(b)-i)))
		if bad := g.payload(b[i : i+n]); bad >= 0 {
			g.left -= int64(bad) // the drain parses on from the bad byte
			g.fail.inFrame = true
			return i + bad
		}
		i += n
		g.left -= int64(n)
		if g.left == 0 {
			g.frameEnd()
			if g.fail != nil {
				// Hold the frame's last byte back (the library never completes the frame);
				// the drain parses on from it.
				g.need = headerLen(g.hdr[1])
				g.hlen, g.left = g.need, 1
				return i - 1
			}
		}
	}
	return len(b)
}

// headerLen returns the length of a frame header whose second byte is b1: the mask key and
// the extended length included.
func headerLen(b1 byte) uint8 {
	n := uint8(2)
	if b1&0x80 != 0 {
		n += 4
	}
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// header takes header bytes from b and returns how many it took; at the second byte and at
// the header's end it checks what it can.
func (g *frameGuard) header(b []byte) int {
	if g.need == 0 {
		g.need, g.hlen = 2, 0
	}
	n := copy(g.hdr[g.hlen:g.need], b)
	g.hlen += uint8(n)
	if g.hlen < g.need {
		return n
	}
	if g.need == 2 {
		if g.fail = g.checkStart(); g.fail != nil {
			return n
		}
		g.need = 6 // mask key
		switch g.hdr[1] & 0x7f {
		case 126:
			g.need += 2
		case 127:
			g.need += 8
		}
		if g.hlen < g.need {
			return n + g.header(b[n:])
		}
	}
	g.headerEnd()
	return n
}

// checkStart checks the first two header bytes.
func (g *frameGuard) checkStart() *violation {
	b0, b1 := g.hdr[0], g.hdr[1]
	g.op = b0 & 0x0f
	rsv1 := b0&0x40 != 0
	if b0&0x30 != 0 {
		return protocolError("reserved bits set")
	}
	if b1&0x80 == 0 {
		return protocolError("unmasked client frame")
	}
	switch g.op {
	case opcodeClose, opcodePing, opcodePong:
		switch {
		case !g.fin():
			return protocolError("fragmented control frame")
		case b1&0x7f > 125:
			return protocolError("control frame over 125 bytes")
		case rsv1:
			return protocolError("RSV1 on a control frame")
		}
	case opcodeCont:
		if !g.is(gInMsg) {
			return protocolError("continuation frame with no message to continue")
		}
		if rsv1 {
			return protocolError("RSV1 on a continuation frame")
		}
	case opcodeText, opcodeBin:
		if g.is(gInMsg) {
			return protocolError("new message inside a fragmented message")
		}
		if rsv1 && !g.compressed {
			return protocolError("RSV1 without permessage-deflate")
		}
		g.set(gText, g.op == opcodeText && !rsv1)
		g.utf = utf8State{}
	default:
		return protocolError("reserved opcode %d", g.op)
	}
	if g.op != opcodePong && g.op != opcodeClose && g.denied() {
		return &violation{code: websocket.StatusPolicyViolation, reason: "rate limit exceeded", cause: ErrRateLimited, why: ReasonRateLimit}
	}
	return nil
}

// denied takes a token for a data or ping frame from the rate limit (nil: none), and
// reports true when there was none. A frame that takeMessage found denied has been asked
// once: checkStart gets that answer, not a second one.
func (g *frameGuard) denied() bool {
	if g.is(gDenied) {
		g.set(gDenied, false)
		return true
	}
	return g.allow != nil && !g.allow()
}

// takeMessage is the readiness transport's short way for the commonest frame: when b starts
// with a whole message in one frame (FIN, text or binary, no reserved bit, masked, at most
// limit bytes of payload, limit < 0: no limit, 65,535 at most) that passes every check of
// scan, at a message boundary, it returns the message's type, its payload unmasked into a
// slice of its own (the UTF-8 of text checked on it), and the frame's length in b, which
// the caller consumes: coder/websocket never sees the frame, whose bytes are gone over once
// (scan, coder's buffer, its unmasking and the copy out of it were four passes). For anything
// else it returns n == 0 and leaves the guard as it was: the bytes go through coder and scan,
// which judge them as ever (a frame the rate limit denies is marked for scan to fail, not
// asked twice).
func (g *frameGuard) takeMessage(b []byte, limit int64) (typ websocket.MessageType, data []byte, n int) {
	if len(b) < 6 || !g.boundary() || g.flags&(gClosed|gDenied) != 0 {
		return 0, nil, 0
	}
	b0, b1 := b[0], b[1]
	op := b0 & 0x0f
	if b0&0xf0 != 0x80 || op != opcodeText && op != opcodeBin || b1&0x80 == 0 {
		return 0, nil, 0 // not final, a reserved bit, another opcode, or unmasked
	}
	hl, l := 6, int(b1&0x7f)
	switch l {
	case 126:
		if len(b) < 8 {
			return 0, nil, 0
		}
		hl, l = 8, int(binary.BigEndian.Uint16(b[2:]))
	case 127:
		return 0, nil, 0
	}
	if limit >= 0 && int64(l) > limit || len(b) < hl+l {
		return 0, nil, 0
	}
	data = make([]byte, l)
	unmaskCopy(data, b[hl:hl+l], [4]byte(b[hl-4:hl]))
	if op == opcodeText && !utf8.Valid(data) {
		return 0, nil, 0 // scan finds the bad byte and fails the frame there
	}
	if g.denied() {
		g.set(gDenied, true)
		return 0, nil, 0
	}
	// The guard's state after scanning the frame whole.
	g.hlen = uint8(copy(g.hdr[:], b[:hl]))
	g.need, g.left, g.kpos, g.clen = 0, 0, 0, 0
	g.op = op
	g.set(gText, op == opcodeText)
	g.utf = utf8State{}
	return websocket.MessageType(op), data, hl + l
}

// takeControl is takeMessage for a ping or a pong: when b starts with a whole ping or pong
// frame (FIN, no reserved bit, masked, at most 125 bytes of payload) at a message boundary
// that passes every check of scan (a ping takes a token of the rate limit as scan would;
// a denied one is marked for scan to fail, not asked twice), it unmasks the payload in place
// in b and returns the opcode, the payload (a slice of b) and the frame's length, which the
// caller consumes; the guard is left as scanning the frame would have. For anything else
// n == 0 and the guard is as it was.
func (g *frameGuard) takeControl(b []byte) (op byte, payload []byte, n int) {
	if len(b) < 6 || !g.boundary() || g.flags&(gClosed|gDenied) != 0 {
		return 0, nil, 0
	}
	b0, b1 := b[0], b[1]
	op = b0 & 0x0f
	if b0&0xf0 != 0x80 || op != opcodePing && op != opcodePong || b1&0x80 == 0 {
		return 0, nil, 0 // not final, a reserved bit, another opcode, or unmasked
	}
	l := int(b1 & 0x7f)
	if l > 125 || len(b) < 6+l {
		return 0, nil, 0 // over 125 bytes (scan fails it), or not whole in b
	}
	if op == opcodePing && g.denied() {
		g.set(gDenied, true)
		return 0, nil, 0
	}
	payload = b[6 : 6+l]
	unmaskCopy(payload, payload, [4]byte(b[2:6]))
	// The guard's state after scanning the frame whole (a control frame between messages
	// leaves the message flags as they were).
	g.hlen = uint8(copy(g.hdr[:], b[:6]))
	g.need, g.left, g.kpos, g.clen = 0, 0, 0, 0
	g.op = op
	return op, payload, 6 + l
}

// unmaskCopy copies src into dst (as long), unmasked with key from the payload's first byte.
// dst may be src (in place).
func unmaskCopy(dst, src []byte, key [4]byte) {
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	i := 0
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^k)
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ key[i&3]
	}
}

// headerEnd reads the length and mask of a complete header.
func (g *frameGuard) headerEnd() {
	h := g.hdr[:g.need]
	switch g.hdr[1] & 0x7f {
	case 126:
		g.left = int64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		l := binary.BigEndian.Uint64(h[2:])
		if l>>63 != 0 {
			g.fail = protocolError("frame length over 2^63")
			return
		}
		g.left = int64(l)
	default:
		g.left = int64(h[1] & 0x7f)
	}
	g.kpos, g.clen = 0, 0
	if g.op < opcodeClose {
		g.set(gInMsg, !g.fin())
	}
	if g.left == 0 {
		g.frameEnd()
	}
}

// payload looks at part of a frame's payload; it returns the offset of a byte that makes the
// message invalid, or -1.
func (g *frameGuard) payload(b []byte) int {
	key := g.mask()
	switch {
	case g.op == opcodeClose:
		if g.ctl == nil {
			g.ctl = new([125]byte)
		}
		for _, x := range b {
			g.ctl[g.clen] = x ^ key[g.kpos&3]
			g.clen++
			g.kpos++
		}
	case g.is(gText) && g.op < opcodeClose:
		var buf [256]byte
		for off := 0; off < len(b); {
			n := copy(buf[:], b[off:])
			for j := range n {
				buf[j] ^= key[(int(g.kpos)+j)&3]
			}
			g.kpos = uint8((int(g.kpos) + n) & 3)
			if bad := g.utf.feed(buf[:n]); bad >= 0 {
				g.fail = &violation{code: websocket.StatusInvalidFramePayloadData, reason: "invalid UTF-8", cause: ErrInvalidUTF8, why: ReasonInvalidUTF8}
				return off + bad
			}
			off += n
		}
	}
	return -1
}

// frameEnd checks what can only be checked once a frame is whole, and readies the next.
func (g *frameGuard) frameEnd() {
	g.need = 0
	switch {
	case g.op == opcodeClose:
		var p []byte
		if g.ctl != nil {
			p = g.ctl[:g.clen]
		}
		g.fail = checkClosePayload(p)
		g.set(gClosed, g.fail == nil)
		g.set(gPeerClose, g.fail != nil)
	case g.op < opcodeClose && g.fin() && g.is(gText) && g.utf.need != 0:
		g.fail = &violation{code: websocket.StatusInvalidFramePayloadData, reason: "invalid UTF-8", cause: ErrInvalidUTF8, why: ReasonInvalidUTF8}
	}
}

// checkClosePayload checks a close frame's payload: empty, or a code a peer may send and a
// UTF-8 reason.
func checkClosePayload(p []byte) *violation {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return protocolError("close frame with a 1-byte payload")
	}
	if code := websocket.StatusCode(binary.BigEndian.Uint16(p)); !peerCloseCode(code) {
		return protocolError("invalid close code %d", int(code))
	}
	if !utf8.Valid(p[2:]) {
		return &violation{code: websocket.StatusInvalidFramePayloadData, reason: "close reason is not valid UTF-8", cause: ErrInvalidUTF8, why: ReasonInvalidUTF8}
	}
	return nil
}

// peerCloseCode reports whether a peer may close with code: the codes RFC 6455 defines for
// an endpoint to send (1000-1003, 1007-1011) and the application range 3000-4999. 1012-1014
// are registered with IANA for servers (restart, try again later, bad gateway); a client
// has no use for them, and conformance suites count them as invalid from a peer.
func peerCloseCode(code websocket.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

// testHookDrain, if set, runs when a drain starts, after the shut (tests only).
var testHookDrain atomic.Pointer[func()]

// drain discards the input up to the peer's close frame (or the end of the stream, or the
// deadline the close handshake set), then reports the violation again.
func (g *frameGuard) drain() error {
	if g.is(gDrained) || g.is(gPeerClose) {
		return g.fail
	}
	if g.fail.shut != nil {
		g.fail.shut()
	}
	if h := testHookDrain.Load(); h != nil {
		(*h)()
	}
	g.set(gDrained, true)
	pending := g.fail.pending
	g.fail.pending = nil
	if g.skip(pending) {
		return g.fail
	}
	var buf [512]byte
	for {
		n, err := g.src.Read(buf[:])
		if g.skip(buf[:n]) || err != nil {
			return g.fail
		}
	}
}

// skip parses frames out of b without judging them, and reports whether the peer's close
// frame went by.
func (g *frameGuard) skip(b []byte) bool {
	for i := 0; i < len(b); {
		if g.need == 0 || g.hlen < g.need {
			i += g.skipHeader(b[i:])
		} else {
			n := int(min(g.left, int64(len(b)-i)))
			i += n
			g.left -= int64(n)
			if g.left == 0 {
				g.need = 0
			}
		}
		if g.need == 0 && g.op == opcodeClose && g.hlen > 0 {
			return true
		}
	}
	return false
}

// skipHeader collects a header without checking it.
func (g *frameGuard) skipHeader(b []byte) int {
	if g.need == 0 {
		g.need, g.hlen, g.op = 2, 0, 0xff
	}
	n := copy(g.hdr[g.hlen:g.need], b)
	g.hlen += uint8(n)
	if g.hlen < g.need {
		return n
	}
	if g.need == 2 {
		g.op = g.hdr[0] & 0x0f
		if g.hdr[1]&0x80 != 0 {
			g.need += 4
		}
		switch g.hdr[1] & 0x7f {
		case 126:
			g.need += 2
		case 127:
			g.need += 8
		}
		if g.hlen < g.need {
			return n + g.skipHeader(b[n:])
		}
	}
	switch g.hdr[1] & 0x7f {
	case 126:
		g.left = int64(binary.BigEndian.Uint16(g.hdr[2:]))
	case 127:
		g.left = int64(binary.BigEndian.Uint64(g.hdr[2:]) & (1<<63 - 1))
	default:
		g.left = int64(g.hdr[1] & 0x7f)
	}
	if g.left == 0 {
		g.need = 0
	}
	return n
}

// utf8State validates UTF-8 incrementally, as utf8.Valid would the whole (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF).
type utf8State struct {
	need   uint8 // continuation bytes still due
	lo, hi byte  // the range of the next one
}

// feed returns the offset in b of the first byte that cannot continue valid UTF-8, or -1.
func (s *utf8State) feed(b []byte) int {
	for i := 0; i < len(b); i++ {
		if s.need == 0 {
			for i+8 <= len(b) && binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 == 0 {
				i += 8 // a run of ASCII, a word at a time
			}
			if i == len(b) {
				break
			}
		}
		c := b[i]
		if s.need == 0 {
			if c < utf8.RuneSelf {
				continue
			}
			switch {
			case c >= 0xc2 && c <= 0xdf:
				s.need, s.lo, s.hi = 1, 0x80, 0xbf
			case c == 0xe0:
				s.need, s.lo, s.hi = 2, 0xa0, 0xbf
			case c == 0xed:
				s.need, s.lo, s.hi = 2, 0x80, 0x9f
			case c >= 0xe1 && c <= 0xef:
				s.need, s.lo, s.hi = 2, 0x80, 0xbf
			case c == 0xf0:
				s.need, s.lo, s.hi = 3, 0x90, 0xbf
			case c >= 0xf1 && c <= 0xf3:
				s.need, s.lo, s.hi = 3, 0x80, 0xbf
			case c == 0xf4:
				s.need, s.lo, s.hi = 3, 0x80, 0x8f
			default:
				return i
			}
			continue
		}
		if c < s.lo || c > s.hi {
			return i
		}
		s.need--
		s.lo, s.hi = 0x80, 0xbf
	}
	return -1
}
