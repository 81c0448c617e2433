package wsserver

import (
	"bytes"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// clientFrame is one masked frame as a client sends it (frameBytes, with FIN as a flag).
func clientFrame(fin bool, op byte, payload []byte) []byte {
	if fin {
		op |= 0x80
	}
	return frameBytes(op, payload)
}

// The guard stands at a boundary only between whole messages, whatever the chunking: a
// control frame inside a fragmented message is not a boundary. (The readiness transport
// reads "would block" only there.)
func TestGuardBoundaries(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70_000)
	mid := bytes.Repeat([]byte("y"), 300)
	var stream []byte
	var boundaries []int // offsets after which the stream is at a message boundary
	add := func(f []byte, ends bool) {
		stream = append(stream, f...)
		if ends {
			boundaries = append(boundaries, len(stream))
		}
	}
	add(clientFrame(true, 1, []byte("hello")), true)
	add(clientFrame(true, 9, []byte("ping")), true) // a ping between messages
	add(clientFrame(false, 2, mid), false)          // fragmented: first
	add(clientFrame(true, 10, nil), false)          // a pong inside the message
	add(clientFrame(false, 0, []byte("c")), false)  // continuation
	add(clientFrame(true, 0, big), true)            // final continuation, 64-bit length
	add(clientFrame(true, 1, nil), true)            // empty message
	add(clientFrame(true, 8, []byte{3, 232}), true) // close

	for _, chunk := range []int{1, 2, 3, 7, 512, len(stream)} {
		var g frameGuard
		require.True(t, g.boundary())
		next := 0
		for off := 0; off < len(stream); off += chunk {
			end := min(off+chunk, len(stream))
			require.Equal(t, end-off, g.scan(stream[off:end]))
			for next < len(boundaries) && boundaries[next] < end {
				next++
			}
			atBoundary := next < len(boundaries) && boundaries[next] == end
			require.Equal(t, atBoundary, g.boundary(), "chunk %d, offset %d", chunk, end)
		}
	}
}

// takeMessage takes exactly the whole single-frame text and binary messages, unmasked, and
// leaves the guard as scanning the frame would have: the frames that follow are judged the
// same either way.
func TestGuardTakeMessage(t *testing.T) {
	long := bytes.Repeat([]byte("0123456789abcdef"), 300) // 4,800 bytes: a 16-bit length
	for _, tc := range []struct {
		name  string
		frame []byte
		typ   websocket.MessageType
		data  []byte
	}{
		{"text", frameBytes(finBit|opText, []byte("héllo, wörld")), websocket.MessageText, []byte("héllo, wörld")},
		{"binary, odd length", frameBytes(finBit|opBinary, pattern(13)), websocket.MessageBinary, pattern(13)},
		{"empty", frameBytes(finBit|opText, nil), websocket.MessageText, []byte{}},
		{"16-bit length", frameBytes(finBit|opBinary, long), websocket.MessageBinary, long},
	} {
		next := frameBytes(opCont, nil) // a continuation with nothing to continue: scan fails it
		var g frameGuard
		typ, data, n := g.takeMessage(append(bytes.Clone(tc.frame), next...), -1)
		require.Equal(t, len(tc.frame), n, tc.name)
		require.Equal(t, tc.typ, typ, tc.name)
		require.Equal(t, tc.data, data, tc.name)
		require.True(t, g.boundary(), tc.name)
		var s frameGuard
		require.Equal(t, len(tc.frame), s.scan(tc.frame), tc.name)
		require.Equal(t, s.boundary(), g.boundary(), tc.name)
		require.Equal(t, s.scan(next), g.scan(next), tc.name)
		require.Equal(t, s.fail.reason, g.fail.reason, tc.name)
	}
}

// What takeMessage leaves alone goes through coder/websocket and scan, unchanged: fragments,
// control frames, reserved bits, unmasked or incomplete frames, a payload over the limit,
// invalid UTF-8, a 64-bit length, and any frame once the guard is not at a boundary.
func TestGuardTakeMessageLeaves(t *testing.T) {
	text := frameBytes(finBit|opText, []byte("hello"))
	unmasked := bytes.Clone(text)
	unmasked[1] &^= 0x80
	for _, tc := range []struct {
		name  string
		b     []byte
		limit int64
	}{
		{"first fragment", frameBytes(opText, []byte("he")), -1},
		{"continuation", frameBytes(finBit|opCont, []byte("he")), -1},
		{"ping", frameBytes(finBit|opPing, []byte("p")), -1},
		{"close", frameBytes(finBit|opCloseF, closePayload(1000, "")), -1},
		{"RSV1", frameBytes(finBit|0x40|opText, []byte("x")), -1},
		{"unmasked", unmasked, -1},
		{"incomplete", text[:len(text)-1], -1},
		{"header only", text[:6], -1},
		{"over the limit", text, 4},
		{"invalid UTF-8", frameBytes(finBit|opText, []byte{'a', 0xff}), -1},
		{"64-bit length", frameBytes(finBit|opBinary, make([]byte, 70_000)), -1},
	} {
		var g frameGuard
		_, data, n := g.takeMessage(tc.b, tc.limit)
		require.Zero(t, n, tc.name)
		require.Nil(t, data, tc.name)
		require.Equal(t, frameGuard{}, g, tc.name)
	}
	// Inside a fragmented message.
	var g frameGuard
	first := frameBytes(opText, []byte("he"))
	require.Equal(t, len(first), g.scan(first))
	_, _, n := g.takeMessage(text, -1)
	require.Zero(t, n)
	require.Less(t, g.scan(text), len(text))
	require.Contains(t, g.fail.reason, "new message inside a fragmented message")
}

// A frame the rate limit denies is not taken, and scan fails it for the rate limit without
// asking the limit a second time.
func TestGuardTakeMessageRateLimit(t *testing.T) {
	asked, tokens := 0, 1
	g := frameGuard{allow: func() bool {
		asked++
		if tokens == 0 {
			return false
		}
		tokens--
		return true
	}}
	text := frameBytes(finBit|opText, []byte("hello"))
	_, _, n := g.takeMessage(text, -1)
	require.Equal(t, len(text), n)
	require.Equal(t, 1, asked)
	_, _, n = g.takeMessage(text, -1)
	require.Zero(t, n)
	require.Equal(t, 2, asked)
	require.Less(t, g.scan(text), len(text))
	require.Equal(t, 2, asked, "the limit was asked twice for one frame")
	require.ErrorIs(t, g.fail.cause, ErrRateLimited)
}

// takeControl takes exactly the whole pings and pongs at a boundary, unmasked, and leaves
// the guard as scanning the frame would have; anything else it leaves to coder/websocket
// and scan, with the guard untouched.
func TestGuardTakeControl(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		op    byte
		data  []byte
	}{
		{"ping", frameBytes(finBit|opPing, []byte("are you there")), opcodePing, []byte("are you there")},
		{"empty pong", frameBytes(finBit|opPong, nil), opcodePong, []byte{}},
		{"ping of 125 bytes", frameBytes(finBit|opPing, pattern(125)), opcodePing, pattern(125)},
	} {
		next := frameBytes(opCont, nil) // a continuation with nothing to continue: scan fails it
		var g frameGuard
		op, data, n := g.takeControl(append(bytes.Clone(tc.frame), next...))
		require.Equal(t, len(tc.frame), n, tc.name)
		require.Equal(t, tc.op, op, tc.name)
		require.Equal(t, tc.data, data, tc.name)
		var s frameGuard
		require.Equal(t, len(tc.frame), s.scan(tc.frame), tc.name)
		require.Equal(t, s, g, tc.name)
		require.Equal(t, s.scan(next), g.scan(next), tc.name)
		require.Equal(t, s.fail.reason, g.fail.reason, tc.name)
	}
	unmasked := frameBytes(finBit|opPing, []byte("p"))
	unmasked[1] &^= 0x80
	ping := frameBytes(finBit|opPing, []byte("p"))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"text", frameBytes(finBit|opText, []byte("hello"))},
		{"close", frameBytes(finBit|opCloseF, closePayload(1000, ""))},
		{"fragmented ping", frameBytes(opPing, []byte("p"))},
		{"ping over 125 bytes", frameBytes(finBit|opPing, make([]byte, 126))},
		{"RSV1", frameBytes(finBit|0x40|opPong, nil)},
		{"unmasked", unmasked},
		{"incomplete", ping[:len(ping)-1]},
	} {
		var g frameGuard
		_, data, n := g.takeControl(bytes.Clone(tc.b))
		require.Zero(t, n, tc.name)
		require.Nil(t, data, tc.name)
		require.Equal(t, frameGuard{}, g, tc.name)
	}
	// Inside a fragmented message: a ping there is coder's (the guard is not at a boundary).
	var g frameGuard
	first := frameBytes(opText, []byte("he"))
	require.Equal(t, len(first), g.scan(first))
	_, _, n := g.takeControl(ping)
	require.Zero(t, n)
}

// A ping the rate limit denies is not taken, and scan fails it for the rate limit without
// asking the limit a second time; a pong takes no token.
func TestGuardTakeControlRateLimit(t *testing.T) {
	asked := 0
	g := frameGuard{allow: func() bool { asked++; return false }}
	pong := frameBytes(finBit|opPong, nil)
	_, _, n := g.takeControl(bytes.Clone(pong))
	require.Equal(t, len(pong), n)
	require.Zero(t, asked)
	ping := frameBytes(finBit|opPing, []byte("p"))
	_, _, n = g.takeControl(bytes.Clone(ping))
	require.Zero(t, n)
	require.Equal(t, 1, asked)
	require.Less(t, g.scan(ping), len(ping))
	require.Equal(t, 1, asked, "the limit was asked twice for one frame")
	require.ErrorIs(t, g.fail.cause, ErrRateLimited)
}
