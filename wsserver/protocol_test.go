package wsserver

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// echoServer echoes every message and records OnClose.
func echoServer(t *testing.T, opts Options) (*testServer, *closes) {
	cl := newCloses()
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }, Close: cl.record}, opts)
	return ts, cl
}

// finishClose answers the server's close frame and expects a clean end of the stream.
func (c *rawClient) finishClose() {
	c.t.Helper()
	c.send(frameBytes(finBit|opCloseF, closePayload(1000, "")))
	c.expectEOF()
}

// unmasked builds a client frame without a mask (clients must mask).
func unmasked(b0 byte, payload []byte) []byte {
	return append([]byte{b0, byte(len(payload))}, payload...)
}

// A valid message followed by a bad frame: the peer gets the echo of the valid message, then
// the 1002 close, and nothing for what followed the bad frame; OnClose reports 1002.
func TestValidMessageThenBadFrame(t *testing.T) {
	for name, bad := range map[string][]byte{
		"reserved bit":                   frameBytes(finBit|0x20|opText, []byte("x")),
		"RSV1 without compression":       frameBytes(finBit|0x40|opText, []byte("x")),
		"reserved data opcode":           frameBytes(finBit|0x3, []byte("x")),
		"reserved control opcode":        frameBytes(finBit|0xb, nil),
		"continuation with nothing":      frameBytes(finBit|opCont, []byte("x")),
		"unmasked":                       unmasked(finBit|opText, []byte("x")),
		"ping over 125 bytes":            frameBytes(finBit|opPing, make([]byte, 126)),
		"fragmented ping":                frameBytes(opPing, []byte("x")),
		"new message inside a fragment":  append(frameBytes(opText, []byte("a")), frameBytes(finBit|opText, []byte("b"))...),
		"close with a 1-byte payload":    frameBytes(finBit|opCloseF, []byte{3}),
		"close with reason over 123":     frameBytes(finBit|opCloseF, closePayload(1000, strings.Repeat("r", 124))),
		"close code 1005 sent":           frameBytes(finBit|opCloseF, closePayload(1005, "")),
		"binary continuation after text": append(frameBytes(finBit|opText, []byte("a")), frameBytes(opCont, []byte("b"))...),
	} {
		t.Run(name, func(t *testing.T) {
			ts, cl := echoServer(t, Options{})
			rc := rawDial(t, ts.url)
			// A bad close frame is still the peer's close: a peer sends nothing after it
			// (RFC 6455, 5.5.1), and the server may end the connection as soon as it has
			// answered. Bytes sent after it could reach a closed socket and come back as a
			// reset (1 run in ~60 when the client sent a ping and then its own close here).
			peerClosed := bad[0]&0x0f == opCloseF
			if peerClosed {
				rc.send(frameBytes(finBit|opText, []byte("hello")), bad)
			} else {
				rc.send(frameBytes(finBit|opText, []byte("hello")), bad, frameBytes(finBit|opPing, []byte("after")))
			}
			op, p := rc.read()
			require.Equal(t, byte(opText), op)
			require.Equal(t, "hello", string(p))
			if name == "binary continuation after text" {
				op, p = rc.read()
				require.Equal(t, byte(opText), op)
				require.Equal(t, "a", string(p))
			}
			code, _ := rc.expectClose()
			require.Equal(t, 1002, code)
			if peerClosed {
				rc.expectEOF()
			} else {
				rc.finishClose()
			}
			err := testutil.Recv(t, cl.errs, "OnClose")
			require.Equal(t, websocket.StatusProtocolError, websocket.CloseStatus(err), "OnClose got %v", err)
			require.ErrorIs(t, err, ErrProtocol)
		})
	}
}

// Invalid UTF-8 in a fragmented text message closes the connection with 1007 at the first
// byte that cannot continue valid UTF-8, before the message ends.
func TestInvalidUTF8FailsFast(t *testing.T) {
	for name, frames := range map[string][][]byte{
		"invalid byte in the second fragment": {frameBytes(opText, []byte("héllo")), frameBytes(opCont, []byte{'a', 0xff})},
		"sequence broken across fragments":    {frameBytes(opText, []byte("ok\xe2\x82")), frameBytes(opCont, []byte{0x28})},
		"surrogate":                           {frameBytes(opText, []byte("\xed\xa0\x80"))},
		"overlong":                            {frameBytes(opText, []byte("\xc0\xaf"))},
		"above U+10FFFF":                      {frameBytes(opText, []byte("\xf4\x90\x80\x80"))},
		"message ends mid-sequence":           {frameBytes(opText, []byte("ok\xe2")), frameBytes(finBit|opCont, []byte("\x82"))},
	} {
		t.Run(name, func(t *testing.T) {
			ts, cl := echoServer(t, Options{})
			rc := rawDial(t, ts.url)
			rc.send(frames...) // never finished (except the last case): the server must not wait
			code, _ := rc.expectClose()
			require.Equal(t, 1007, code)
			rc.finishClose()
			err := testutil.Recv(t, cl.errs, "OnClose")
			require.ErrorIs(t, err, ErrInvalidUTF8)
			require.Equal(t, websocket.StatusInvalidFramePayloadData, websocket.CloseStatus(err))
		})
	}
}

// Valid UTF-8 split anywhere across fragments, with control frames between them, is
// delivered whole.
func TestFragmentedTextWithPings(t *testing.T) {
	ts, cl := echoServer(t, Options{})
	rc := rawDial(t, ts.url)
	msg := []byte("κόσμε €𝄞 ok")
	for cut := 1; cut < len(msg); cut++ {
		rc.send(frameBytes(opText, msg[:cut]), frameBytes(finBit|opPing, []byte(strconv.Itoa(cut))),
			frameBytes(opCont, nil), frameBytes(finBit|opCont, msg[cut:]))
		op, p := rc.read()
		require.Equal(t, byte(opPong), op)
		require.Equal(t, strconv.Itoa(cut), string(p))
		op, p = rc.read()
		require.Equal(t, byte(opText), op)
		require.Equal(t, string(msg), string(p))
	}
	rc.send(frameBytes(finBit|opCloseF, closePayload(1000, "bye")))
	code, reason := rc.expectClose()
	require.Equal(t, 1000, code)
	require.Equal(t, "bye", reason)
	rc.expectEOF()
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}

// Close codes a peer may send are echoed; the others, and a reason that is not UTF-8, are
// answered with 1002 and 1007.
func TestPeerCloseCodes(t *testing.T) {
	type tc struct {
		code   uint16
		reason string
		want   int
	}
	var cases []tc
	for _, c := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cases = append(cases, tc{c, "r", int(c)})
	}
	for _, c := range []uint16{0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, tc{c, "", 1002})
	}
	cases = append(cases, tc{1000, strings.Repeat("é", 61) + "x", 1000}, tc{1000, "ok\xff", 1007}, tc{1000, "\xe2\x82", 1007})
	for _, c := range cases {
		t.Run(strconv.Itoa(int(c.code))+" "+strconv.Quote(c.reason), func(t *testing.T) {
			ts, cl := echoServer(t, Options{})
			rc := rawDial(t, ts.url)
			rc.send(frameBytes(finBit|opCloseF, closePayload(c.code, c.reason)))
			code, reason := rc.expectClose()
			require.Equal(t, c.want, code)
			if c.want == int(c.code) {
				require.Equal(t, c.reason, reason, "the echo carries the peer's reason")
			}
			rc.expectEOF()
			err := testutil.Recv(t, cl.errs, "OnClose")
			switch {
			case c.want == 1000 || c.want == 1001:
				require.NoError(t, err)
			case c.want == int(c.code): // the peer's own code
				require.Equal(t, websocket.StatusCode(c.code), websocket.CloseStatus(err))
				require.NotErrorIs(t, err, ErrProtocol)
			case c.want == 1002:
				require.ErrorIs(t, err, ErrProtocol)
			default:
				require.ErrorIs(t, err, ErrInvalidUTF8)
			}
		})
	}
}

// A message that never ends cannot bypass the rate limit: frames are counted.
func TestRateLimitCountsFrames(t *testing.T) {
	ts, cl := echoServer(t, Options{RateLimit: 5, RateBurst: 5})
	rc := rawDial(t, ts.url)
	frames := [][]byte{frameBytes(opText, []byte("a"))}
	for range 50 {
		frames = append(frames, frameBytes(opCont, nil))
	}
	rc.send(frames...)
	code, _ := rc.expectClose()
	require.Equal(t, 1008, code)
	rc.finishClose()
	require.ErrorIs(t, testutil.Recv(t, cl.errs, "OnClose"), ErrRateLimited)
}

// A ping the peer sends after the server's close frame is not answered (nothing may follow a
// close frame), and the connection ends cleanly: no reset that would cost the peer the
// messages queued before the close.
func TestPingDuringCloseHandshake(t *testing.T) {
	const n = 20
	cl := newCloses()
	release := make(chan struct{})
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		for i := range n {
			_ = c.SendText(strconv.Itoa(i))
		}
		require.NoError(t, c.Close(websocket.StatusNormalClosure, "done"))
		<-release // with MaxPending 1 the reader waits: the close handshake reads what follows
	}, Close: cl.record}, Options{MaxPending: 1})
	rc := rawDial(t, ts.url)
	rc.send(frameBytes(finBit|opText, []byte("go")))
	for i := range n {
		op, p := rc.read()
		require.Equal(t, byte(opText), op)
		require.Equal(t, strconv.Itoa(i), string(p))
	}
	code, _ := rc.expectClose()
	require.Equal(t, 1000, code)
	// The peer's timer fires now: a ping, a late message, then its close answer.
	late := [][]byte{frameBytes(finBit|opPing, []byte("late"))}
	for range n { // more than the server's read buffer: some of it is still in the socket
		late = append(late, frameBytes(finBit|opText, bytes.Repeat([]byte("late"), 250)))
	}
	rc.send(append(late, frameBytes(finBit|opCloseF, closePayload(1000, "")))...)
	rest, err := readAllFrames(rc)
	require.NoError(t, err, "the server must close cleanly, not reset the connection")
	require.Empty(t, rest, "nothing may follow the close frame")
	close(release)
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}

// readAllFrames reads frames until the end of the stream.
func readAllFrames(c *rawClient) ([]byte, error) {
	var ops []byte
	for {
		op, _, err := c.next()
		if err != nil {
			if err.Error() == "EOF" {
				return ops, nil
			}
			return ops, err
		}
		ops = append(ops, op)
	}
}

// A peer's normal close on a connection that is busy sending is reported as normal, not as a
// failed write (the writer meets the close frame the reader echoed).
func TestPeerCloseWhileSendingIsNormal(t *testing.T) {
	entered, sent := make(chan struct{}), make(chan struct{})
	cl := newCloses()
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		testutil.Recv(t, entered, "the reader's end")
		_ = c.SendText("reply") // meets the echoed close frame
		close(sent)
	}, Close: cl.record}, Options{})
	hook := func(c *Conn) {
		if c.s == ts.Server {
			close(entered)
			testutil.Recv(t, sent, "the handler's send")
		}
	}
	testHookFinish.Store(&hook)
	t.Cleanup(func() { testHookFinish.Store(nil) })
	rc := rawDial(t, ts.url)
	rc.send(frameBytes(finBit|opText, []byte("m")), frameBytes(finBit|opCloseF, closePayload(1000, "")))
	code, _ := rc.expectClose()
	require.Equal(t, 1000, code)
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}

// The incremental validator agrees with utf8.Valid, whatever the split.
func TestUTF8StateMatchesValid(t *testing.T) {
	check := func(b []byte) {
		want := utf8.Valid(b)
		for cut := 0; cut <= len(b); cut++ {
			var s utf8State
			ok := s.feed(b[:cut]) < 0 && s.feed(b[cut:]) < 0 && s.need == 0
			require.Equal(t, want, ok, "% x split at %d", b, cut)
		}
	}
	for x := range 1 << 16 {
		check([]byte{byte(x >> 8), byte(x)})
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff}
	for range 100_000 {
		b := make([]byte, 1+r.IntN(6))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(b)
	}
	check(bytes.Repeat([]byte("𝄞é"), 10))
	for range 20_000 { // long ASCII runs (checked a word at a time) around a few others
		b := bytes.Repeat([]byte("a"), 1+r.IntN(40))
		for range r.IntN(3) {
			b[r.IntN(len(b))] = alphabet[r.IntN(len(alphabet))]
		}
		check(b)
	}
}

// With permessage-deflate, compressed messages (RSV1 on their first frame) are echoed, and a
// compressed text message that is not UTF-8 once inflated is answered with 1007.
func TestCompressedMessages(t *testing.T) {
	ts, cl := echoServer(t, Options{CompressionMode: websocket.CompressionContextTakeover})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover})
	require.NoError(t, err)
	defer c.CloseNow()
	big := strings.Repeat("compressible ", 200)
	for _, msg := range []string{"small", big, big + "é"} {
		write(t, c, msg)
		_, got := read(t, c)
		require.Equal(t, msg, got)
	}
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(big+"\xff")))
	require.Equal(t, websocket.StatusInvalidFramePayloadData, readUntilClosed(t, c))
	require.ErrorIs(t, testutil.Recv(t, cl.errs, "OnClose"), ErrInvalidUTF8)
}

// Frames the peer sends after its close frame are not answered and do not reset the
// connection: the server reads what it has received before it closes the socket.
func TestFramesAfterPeerCloseNoReset(t *testing.T) {
	ts, cl := echoServer(t, Options{})
	rc := rawDial(t, ts.url)
	frames := [][]byte{frameBytes(finBit|opCloseF, closePayload(1000, "bye")), frameBytes(finBit|opPing, []byte("late"))}
	for range 20 { // more than the server reads at once: some of it is still in the socket
		frames = append(frames, frameBytes(finBit|opText, bytes.Repeat([]byte("late"), 250)))
	}
	rc.send(frames...)
	code, _ := rc.expectClose()
	require.Equal(t, 1000, code)
	rest, err := readAllFrames(rc)
	require.NoError(t, err, "the server must close cleanly, not reset the connection")
	require.Empty(t, rest, "nothing may follow the close frame")
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}
