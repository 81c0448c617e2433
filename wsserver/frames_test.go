package wsserver

import (
	"bytes"
	"testing"

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
