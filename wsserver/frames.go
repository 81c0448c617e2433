package wsserver

// frameTracker follows the frame structure of the bytes a client sends (RFC 6455 §5.2), as
// they are handed to coder/websocket, so that the readiness transport knows whether the
// stream stands at a message boundary: there, and only there, coder/websocket's Read may be
// told "would block" and return without harm; anywhere else an error desyncs the stream or
// loses the message, so the read must wait.
type frameTracker struct {
	hdr     [14]byte // the header being collected
	hn      uint8    // header bytes collected
	need    uint8    // header length once the second byte is known; 0 before
	inMsg   bool     // a fragmented data message is under way (its final frame not seen)
	payload uint64   // payload bytes left in the current frame
}

// boundary reports whether the bytes so far end a whole message (or are none).
func (t *frameTracker) boundary() bool { return t.hn == 0 && t.payload == 0 && !t.inMsg }

// feed advances over p, the next bytes of the stream.
func (t *frameTracker) feed(p []byte) {
	for len(p) > 0 {
		if t.payload > 0 {
			n := uint64(len(p))
			if n > t.payload {
				n = t.payload
			}
			t.payload -= n
			p = p[n:]
			continue
		}
		t.hdr[t.hn] = p[0]
		t.hn++
		p = p[1:]
		if t.hn == 2 {
			t.need = 2
			switch t.hdr[1] & 0x7f {
			case 126:
				t.need += 2
			case 127:
				t.need += 8
			}
			if t.hdr[1]&0x80 != 0 {
				t.need += 4 // masking key
			}
		}
		if t.hn >= 2 && t.hn == t.need {
			t.endHeader()
		}
	}
}

// endHeader takes the collected header: the payload length, and whether a data message is
// left unfinished.
func (t *frameTracker) endHeader() {
	h := t.hdr[:t.hn]
	var n uint64
	switch h[1] & 0x7f {
	case 126:
		n = uint64(h[2])<<8 | uint64(h[3])
	case 127:
		for _, b := range h[2:10] {
			n = n<<8 | uint64(b)
		}
	default:
		n = uint64(h[1] & 0x7f)
	}
	if op := h[0] & 0x0f; op < 8 { // a data frame (continuation, text, binary); not control
		t.inMsg = h[0]&0x80 == 0
	}
	t.payload = n
	t.hn, t.need = 0, 0
}
