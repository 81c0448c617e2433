package wsserver

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// throughGuard reads stream through a guard whose source hands out chunk bytes at a time,
// and returns what passed and the error that ended it (nil at the end of a valid stream).
func throughGuard(stream []byte, chunk int) ([]byte, error) {
	g := &frameGuard{src: &chunkReader{b: stream, n: chunk}}
	var out []byte
	buf := make([]byte, 7) // odd sized reads too
	for {
		n, err := g.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// Whatever the chunking, a valid stream passes unchanged and a bad frame stops it before its
// end with the right code.
func TestGuardChunking(t *testing.T) {
	valid := bytes.Join([][]byte{
		frameBytes(opText, []byte("hé")), frameBytes(finBit|opPing, []byte("p")),
		frameBytes(finBit|opCont, []byte("llo €")), frameBytes(finBit|opBinary, pattern(200)),
		frameBytes(finBit|opText, bytes.Repeat([]byte("𝄞"), 20_000)), frameBytes(finBit|opPong, nil),
		frameBytes(finBit|opCloseF, closePayload(1000, "bye")),
	}, nil)
	for _, chunk := range []int{1, 2, 3, 5, 13, 64, 1 << 20} {
		got, err := throughGuard(valid, chunk)
		require.NoError(t, err, "chunk %d", chunk)
		require.True(t, bytes.Equal(valid, got), "chunk %d", chunk)
	}
	ok := frameBytes(finBit|opText, []byte("fine"))
	for _, tc := range []struct {
		name string
		bad  []byte
		code websocket.StatusCode
	}{
		{"reserved opcode", frameBytes(finBit|0x3, nil), 1002},
		{"64-bit length", append([]byte{finBit | opBinary, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, 1, 2, 3, 4), 1002},
		{"bad UTF-8 late in a long frame", frameBytes(finBit|opText, append(bytes.Repeat([]byte("a"), 70_000), 0xc0)), 1007},
		{"close reason", frameBytes(finBit|opCloseF, closePayload(1000, "\xff")), 1007},
		{"close code", frameBytes(finBit|opCloseF, closePayload(1006, "")), 1002},
	} {
		stream := append(append([]byte(nil), ok...), tc.bad...)
		for _, chunk := range []int{1, 3, 64, 1 << 20} {
			got, err := throughGuard(stream, chunk)
			var v *violation
			require.ErrorAs(t, err, &v, "%s, chunk %d", tc.name, chunk)
			require.Equal(t, tc.code, v.code, tc.name)
			require.True(t, bytes.HasPrefix(got, ok), "%s: the valid frame passed", tc.name)
			require.Less(t, len(got), len(stream), "%s: the bad frame never passes whole", tc.name)
		}
	}
}

// After a bad frame, the drain reads exactly up to the end of the peer's close frame,
// whatever the bad frame and the chunking: reading on would wait for the close handshake's
// deadline (the peer sends nothing more), and stopping short would close the socket with
// input unread, which resets the connection (the peer may lose our close frame).
func TestGuardDrainStopsAtThePeersClose(t *testing.T) {
	ok := frameBytes(finBit|opText, []byte("fine"))
	after := bytes.Join([][]byte{
		frameBytes(finBit|opPing, []byte("after")), frameBytes(finBit|opBinary, pattern(300)),
		frameBytes(finBit|opCloseF, closePayload(1000, "")),
	}, nil)
	for name, bad := range map[string][]byte{
		"reserved bit":         frameBytes(finBit|0x20|opText, []byte("x")),
		"reserved opcode":      frameBytes(finBit|0x3, []byte("xyz")),
		"unmasked":             unmasked(finBit|opText, []byte("x")),
		"fragmented ping":      frameBytes(opPing, []byte("x")),
		"ping over 125 bytes":  frameBytes(finBit|opPing, make([]byte, 126)),
		"new message inside":   append(frameBytes(opText, []byte("a")), frameBytes(finBit|opText, []byte("b"))...),
		"orphan continuation":  frameBytes(finBit|opCont, []byte("x")),
		"bad UTF-8":            frameBytes(finBit|opText, []byte("ab\xffcd")),
		"bad UTF-8 at the end": frameBytes(finBit|opText, []byte("ab\xe2")),
		"unfinished UTF-8":     append(frameBytes(opText, []byte("ab\xe2")), frameBytes(finBit|opCont, nil)...),
		"64-bit length":        append([]byte{finBit | opBinary, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, 1, 2, 3, 4),
	} {
		stream := bytes.Join([][]byte{ok, bad, after}, nil)
		for _, chunk := range []int{1, 2, 3, 7, 64, 1 << 20} {
			src := &peerReader{chunkReader: chunkReader{b: stream, n: chunk}}
			g := &frameGuard{src: src}
			buf := make([]byte, 7)
			var err error
			for err == nil {
				_, err = g.Read(buf)
			}
			var v *violation
			require.ErrorAs(t, err, &v, "%s, chunk %d", name, chunk)
			_, err = g.Read(buf) // the close handshake's read: the drain
			require.ErrorAs(t, err, &v, "%s, chunk %d", name, chunk)
			require.False(t, src.waited, "%s, chunk %d: the drain read past the close frame", name, chunk)
			require.Empty(t, src.b, "%s, chunk %d: the drain stopped before the close frame's end", name, chunk)
		}
	}
}

// peerReader is a peer that sent its close frame last: a read past it would wait for the
// deadline, so it notes it and fails.
type peerReader struct {
	chunkReader
	waited bool
}

func (r *peerReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		r.waited = true
		return 0, errors.New("read past the end: would wait for the deadline")
	}
	return r.chunkReader.Read(p)
}
