package dispatch

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait on real time: far longer than anything takes, so that a
// failure means a hang, not a slow machine.
const waitTimeout = 10 * time.Second

// notYet checks that nothing arrived on ch in a short while. Outside a synctest bubble it can
// only catch what happens early; inside one, call synctest.Wait first and it is exact.
func notYet[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s happened too early", what)
	case <-time.After(5 * time.Millisecond):
	}
}

// none checks, inside a synctest bubble after synctest.Wait, that ch holds nothing.
func none[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s", what)
	default:
	}
}

// dispatchGoroutines returns the stacks of the goroutines, other than the caller, that run a
// method of this package whose name contains fn ("" for any): a source's relay or timer
// goroutine would show here.
func dispatchGoroutines(fn string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i > 0 && strings.Contains(g, "dispatchkit/dispatch.(*"+fn) {
			out = append(out, g)
		}
	}
	return out
}
