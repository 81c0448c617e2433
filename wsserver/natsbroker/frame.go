package natsbroker

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/coder/websocket"

	"github.com/dispatchkit/dispatchkit/wsserver"
)

// The header versions. A frame's first byte is its version. A node writes version 1 when it
// has no context to carry (tracing off, no propagator), so that its frames are those of the
// nodes before it, byte for byte; version 2 adds the publisher's propagated context. A node
// reads every version up to frameVersion, and counts and logs a newer one (Stats.Newer)
// rather than guess at it. A node from before version 2 drops a version 2 frame as a bad
// header, counted in its Stats.Malformed and logged: upgrade every node before turning
// propagation on (or give the upgraded ones Options.Propagator =
// propagation.NewCompositeTextMapPropagator() meanwhile).
const (
	frameV1      = 1
	frameV2      = 2
	frameVersion = frameV2 // the newest this node reads and writes
	maxVersion   = 63      // versions are small numbers: a first byte beyond is not a room message
)

// errNewer is the error of a frame from a newer node.
var errNewer = errors.New("natsbroker: a frame of a newer header version than this node reads (a newer node sent it: upgrade this one)")

// appendFrame appends the header and m's payload to buf:
//
//	version 1: 1 | message type (1 byte) | len(node) (1 byte) | node | uvarint len(room) | room | payload
//	version 2: 2 | message type | len(node) | node | uvarint len(room) | room | uvarint len(fields) | fields | payload
//
// fields are the propagated context, key-value pairs each as uvarint len(key) | key |
// uvarint len(value) | value. Without fields (nil or empty) the frame is version 1.
func appendFrame(buf []byte, node, room string, fields []string, m wsserver.Message) []byte {
	v := byte(frameV1)
	if len(fields) > 0 {
		v = frameV2
	}
	buf = append(buf, v, byte(m.Type), byte(len(node)))
	buf = append(buf, node...)
	buf = binary.AppendUvarint(buf, uint64(len(room)))
	buf = append(buf, room...)
	if v == frameV2 {
		n := 0
		for _, f := range fields {
			n += uvarintLen(len(f)) + len(f)
		}
		buf = binary.AppendUvarint(buf, uint64(n))
		for _, f := range fields {
			buf = binary.AppendUvarint(buf, uint64(len(f)))
			buf = append(buf, f...)
		}
	}
	return append(buf, m.Data...)
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

// maxFields bounds the context a frame may carry, in bytes.
const maxFields = 8 << 10

// parseFrame reads a frame of any version up to frameVersion; the message's Data and fields
// alias frame (fields is the encoded section: see eachField). A newer version is errNewer.
func parseFrame(frame []byte) (node, room string, fields []byte, m wsserver.Message, err error) {
	if len(frame) < 3 || frame[0] == 0 {
		return "", "", nil, m, errors.New("natsbroker: not a room message (bad header)")
	}
	version := frame[0]
	if version > maxVersion {
		return "", "", nil, m, errors.New("natsbroker: not a room message (bad header)")
	}
	if version > frameVersion {
		return "", "", nil, m, fmt.Errorf("%w (version %d, this node reads up to %d)", errNewer, version, frameVersion)
	}
	typ := websocket.MessageType(frame[1])
	if typ != websocket.MessageText && typ != websocket.MessageBinary {
		return "", "", nil, m, fmt.Errorf("natsbroker: bad message type %d", frame[1])
	}
	n := int(frame[2])
	rest := frame[3:]
	if len(rest) < n {
		return "", "", nil, m, errors.New("natsbroker: truncated header")
	}
	node, rest = string(rest[:n]), rest[n:]
	rl, k := binary.Uvarint(rest)
	if k <= 0 || rl > MaxRoomName || uint64(len(rest)-k) < rl {
		return "", "", nil, m, errors.New("natsbroker: truncated header")
	}
	rest = rest[k:]
	room, rest = string(rest[:rl]), rest[rl:]
	if version >= frameV2 {
		fl, k := binary.Uvarint(rest)
		if k <= 0 || fl > maxFields || uint64(len(rest)-k) < fl {
			return "", "", nil, m, errors.New("natsbroker: truncated context")
		}
		rest = rest[k:]
		fields, rest = rest[:fl], rest[fl:]
		if err := eachField(fields, func(_, _ []byte) {}); err != nil {
			return "", "", nil, m, err
		}
	}
	return node, room, fields, wsserver.Message{Type: typ, Data: rest}, nil
}

// eachField calls fn with every key and value of a frame's context section (they alias it).
func eachField(sec []byte, fn func(k, v []byte)) error {
	for len(sec) > 0 {
		var kv [2][]byte
		for i := range kv {
			l, k := binary.Uvarint(sec)
			if k <= 0 || uint64(len(sec)-k) < l {
				return errors.New("natsbroker: malformed context")
			}
			kv[i], sec = sec[k:k+int(l)], sec[k+int(l):]
		}
		fn(kv[0], kv[1])
	}
	return nil
}
