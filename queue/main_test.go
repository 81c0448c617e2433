package queue

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait in these tests; a wait that runs out fails loudly.
const waitTimeout = 10 * time.Second

// notYet fails if ch is ready now. It proves only "not yet", which is all the tests use it
// for: an event that must wait for another the test has not caused.
func notYet[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	runtime.Gosched()
	select {
	case <-ch:
		t.Fatalf("%s happened too early", what)
	default:
	}
}

// gate is a block that reports it started and waits to be released.
type gate struct {
	started chan struct{}
	release chan struct{}
}

func newGate() *gate {
	return &gate{started: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *gate) block() {
	g.started <- struct{}{}
	<-g.release
}

func (g *gate) open() { close(g.release) }

// syncDone waits until every block submitted to q before it has run.
func syncDone(t testing.TB, q *Queue) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		q.BarrierSync(func() {})
		close(done)
	}()
	testutil.Recv(t, done, fmt.Sprintf("queue %q to drain", q.Label()))
}

// scarceWorkers keeps the executor from lending workers while the test runs, so that a
// blocked worker stays blocked.
func scarceWorkers(t *testing.T) {
	noLending.Store(true)
	exec.mu.Lock()
	exec.poolsLocked(func(p *pool) { p.extra.Store(0) }) // workers lent for an earlier test
	exec.mu.Unlock()
	t.Cleanup(func() { noLending.Store(false) })
}

func withProcs(t *testing.T, n int) {
	t.Helper()
	old := runtime.GOMAXPROCS(n)
	Global(Default).Width() // let the executor see it now
	t.Cleanup(func() {
		runtime.GOMAXPROCS(old)
		Global(Default).Width()
	})
}
