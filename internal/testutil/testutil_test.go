package testutil

import (
	"strings"
	"testing"
)

// fatal records a Fatalf instead of ending the test, to check Recv's failure.
type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Helper() {}
func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = format
	panic(f)
}

func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if got := Recv(t, ch, "a value"); got != 7 {
		t.Fatalf("Recv = %d, want 7", got)
	}
}

func TestRecvTimesOut(t *testing.T) {
	f := &fatal{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("Recv on an empty channel did not fail the test: %v", r)
			}
		}()
		Recv(f, make(chan int), "nothing")
	}()
	if !strings.Contains(f.msg, "timed out") {
		t.Fatalf("failure message %q", f.msg)
	}
}
