package wsserver

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A peer that abandons a frame once the server fails it (Autobahn's 6.4.3 and 6.4.4:
// invalid UTF-8 inside a text frame whose rest never comes, and the peer's close frame sent
// where the rest would be) gets the close frame and then the end of the stream at once:
// the server shuts its sending side after its close frame, since it may not find the peer's
// close frame in what it drains. Before, nothing ended the stream until its close grace
// (5 s) ran out. The drain is held here until the client has read the end of the stream,
// so that only that shutdown can give it.
func TestFailInsideAFrameShutsTheSendingSide(t *testing.T) {
	ts := start(t, HandlerFuncs{}, Options{})
	release := make(chan struct{})
	hook := func() { <-release }
	testHookDrain.Store(&hook)
	t.Cleanup(func() { testHookDrain.Store(nil) })
	t.Cleanup(func() { close(release) })
	rc := rawDial(t, ts.url)
	msg := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited" // invalid at its 13th byte
	f := frameBytes(finBit|opText, []byte(msg))
	rc.send(f[:len(f)-len("edited")]) // the rest of the frame never comes
	code, _ := rc.expectClose()
	require.Equal(t, 1007, code)
	rc.expectEOF()
	rc.send(frameBytes(finBit|opCloseF, closePayload(1000, ""))) // the peer's answer, where the frame went on
}

// A bad byte at a frame's end, or in a header, leaves the peer's close frame where the
// drain finds it: the server waits for it without shutting its sending side first.
func TestFailAtAFrameBoundaryWaitsForTheClose(t *testing.T) {
	ts := start(t, HandlerFuncs{}, Options{})
	rc := rawDial(t, ts.url)
	rc.send(frameBytes(finBit|0x3, nil)) // a reserved opcode
	code, _ := rc.expectClose()
	require.Equal(t, 1002, code)
	rc.send(frameBytes(finBit|opCloseF, closePayload(1000, "")))
	rc.expectEOF()
}
