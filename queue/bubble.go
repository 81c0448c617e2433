package queue

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// bubblesPossible is false outside test binaries, where no synctest bubble can exist: a
// program then never pays for currentBubble's clock read.
var bubblesPossible = testing.Testing()

// currentBubble identifies the testing/synctest bubble of the calling goroutine: 0 outside
// any. A goroutine inherits its creator's bubble, and a bubble's channels and timers may not
// be touched from outside it, so the executor keeps each bubble's work on workers started
// inside it (see pool).
//
// The runtime offers no public way to ask. Outside a bubble, time.Now carries a monotonic
// reading; inside, it does not (the runtime omits it there), so that check settles the
// common case. Only then is the bubble's number read from the goroutine's traceback header
// ("goroutine 7 [running, synctest bubble 1]:"). If the header says no bubble, the clock
// merely lacked a monotonic reading, and the answer is 0.
func currentBubble() uint64 {
	if !bubblesPossible {
		return 0
	}
	if t := time.Now(); t != t.Round(0) {
		return 0
	}
	var buf [160]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	const tag = "synctest bubble "
	i := strings.Index(s, tag)
	if i < 0 {
		return 0
	}
	var id uint64
	for _, c := range s[i+len(tag):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	if id == 0 {
		id = 1<<64 - 1 // a bubble whose number did not parse: still not the outside
	}
	return id
}
