package wsserver

import (
	"bufio"
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// coder/websocket writes its control frames through a bufio.Writer smaller than a frame (an
// idle connection holds that buffer), so a close frame reaches the batchWriter in pieces. A
// ping the keepalive sweep writes meanwhile must not land inside it: the pieces wait until
// the frame is whole, and the ping goes out first, whole too.
func TestControlFrameInPiecesIsNotSplit(t *testing.T) {
	w, client := tcpPair(t) // direct mode
	reason := bytes.Repeat([]byte("r"), 123)
	closeFrame := append([]byte{0x88, 125, 0x03, 0xe8}, reason...)

	bw := bufio.NewWriterSize(w, writeBufferSize(true))
	_, err := bw.Write(closeFrame[:40]) // bufio passes on its first 16 bytes
	require.NoError(t, err)
	require.Equal(t, ctlSent, w.tryControl(&pingFrame), "the sweep's ping")
	_, err = bw.Write(closeFrame[40:])
	require.NoError(t, err)
	require.NoError(t, bw.Flush())
	require.Equal(t, ctlBusy, w.tryControl(&pingFrame), "nothing after the close frame")
	require.Nil(t, w.part, "no buffer kept once the frame went out")

	got := make([]byte, len(pingFrame)+len(closeFrame))
	require.NoError(t, client.SetReadDeadline(time.Now().Add(wait)))
	_, err = io.ReadFull(client, got)
	require.NoError(t, err)
	require.Equal(t, append(append([]byte{}, pingFrame...), closeFrame...), got)
}

func TestFrameSize(t *testing.T) {
	require.Equal(t, -1, frameSize(nil))
	require.Equal(t, -1, frameSize([]byte{0x88}))
	require.Equal(t, 2, frameSize([]byte{0x89, 0}))
	require.Equal(t, 127, frameSize([]byte{0x88, 125}))
	require.Equal(t, -1, frameSize([]byte{0x82, 126, 1}))
	require.Equal(t, 4+300, frameSize([]byte{0x82, 126, 1, 44}))
	require.Equal(t, -1, frameSize([]byte{0x82, 127, 0, 0, 0, 0, 0, 1}))
	require.Equal(t, 10+70000, frameSize([]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70}))
	require.Equal(t, 2+4+5, frameSize([]byte{0x81, 0x85}), "masked")
}
