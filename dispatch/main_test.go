package dispatch

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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

// now returns what ch holds, inside a synctest bubble after synctest.Wait, or fails at once.
func now[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	default:
		t.Fatalf("%s: not there", what)
		panic("unreachable")
	}
}

// dispatchGoroutines returns the stacks of the goroutines, other than the caller, that run a
// method of this package whose name contains fn ("" for any): a source's relay or timer
// goroutine would show here.
func dispatchGoroutines(fn string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	gs := strings.Split(string(buf), "\n\n")
	// Called inside a synctest bubble (the dump starts with the caller), only that bubble's
	// goroutines count: another test's, outside it, may still be on its way out.
	bubble := ""
	if head, _, _ := strings.Cut(gs[0], "\n"); strings.Contains(head, ", synctest bubble ") {
		bubble = head[strings.Index(head, ", synctest bubble "):]
	}
	var out []string
	for i, g := range gs {
		head, _, _ := strings.Cut(g, "\n")
		if i > 0 && strings.Contains(g, "dispatchkit/dispatch.(*"+fn) && strings.HasSuffix(head, bubble) {
			out = append(out, g)
		}
	}
	return out
}

// childEnv names the test that a child process started by inChild is to run.
const childEnv = "DISPATCH_TEST_CHILD"

// inChild runs body in a child process (the test binary again, running only this test), for
// a bug that crashes the process: the parent then fails with the child's output instead of
// dying. Only top-level tests can use it.
func inChild(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		body(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the child process running %s failed:\n%s", t.Name(), out)
	require.Contains(t, string(out), "--- PASS: "+t.Name(), "the child did not run the test:\n%s", out)
}
