package queue

import (
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestBlocksRunUnderAProfilerLabelNamingTheirQueue(t *testing.T) {
	labelled := NewSerial("labelled-queue")
	quiet := NewSerial("quiet-queue", WithProfileLabels(false))
	g1, g2 := newGate(), newGate()
	labelled.Async(g1.block)
	quiet.Async(g2.block)
	testutil.Recv(t, g1.started, "labelled block")
	testutil.Recv(t, g2.started, "unlabelled block")
	var buf bytes.Buffer
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&buf, 1))
	g1.open()
	g2.open()
	require.Contains(t, buf.String(), `"queue":"labelled-queue"`)
	require.NotContains(t, buf.String(), `"queue":"quiet-queue"`)
	syncDone(t, labelled)
	syncDone(t, quiet)
}

func TestCallSitesReachObserversAndPanicHandlers(t *testing.T) {
	r := &recorder{}
	stacks := make(chan []byte, 1)
	q := NewSerial("sited", WithCallSites(true), WithObserver(r),
		WithPanicHandler(func(_ any, stack []byte) { stacks <- stack }))
	q.Async(func() {}) // this line is the site
	q.Async(func() { panic("x") })
	stack := testutil.Recv(t, stacks, "the panic handler")
	require.Contains(t, string(stack), "block submitted at ")
	require.Contains(t, string(stack), "debug_test.go")
	syncDone(t, q)
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Contains(t, r.infos[0].Site, "debug_test.go")
	require.Contains(t, r.infos[0].Site, "TestCallSitesReachObserversAndPanicHandlers")
}

func TestDeadlockDetectionCatchesASyncCycleAcrossQueues(t *testing.T) {
	DetectDeadlocks(true)
	t.Cleanup(func() { DetectDeadlocks(false) })
	a, b := NewSerial("A"), NewSerial("B")
	aIn, bIn := newGate(), newGate()
	errA, errB := make(chan error, 1), make(chan error, 1)
	a.Async(func() {
		aIn.block()
		errA <- b.SyncContext(context.Background(), func(context.Context) {})
	})
	b.Async(func() {
		bIn.block()
		errB <- a.SyncContext(context.Background(), func(context.Context) {})
	})
	testutil.Recv(t, aIn.started, "A's block")
	testutil.Recv(t, bIn.started, "B's block")
	bIn.open() // B's block now waits in Sync for A
	require.Eventually(t, func() bool {
		detectMu.Lock()
		defer detectMu.Unlock()
		return len(waitingFor) == 1
	}, waitTimeout, 100_000)
	aIn.open() // A's block Syncs onto B, whose holder waits for A: a cycle
	err := testutil.Recv(t, errA, "A's Sync onto B")
	require.ErrorIs(t, err, ErrWouldDeadlock)
	require.Contains(t, err.Error(), `"B"`)
	require.Contains(t, err.Error(), `"A"`)
	require.Contains(t, err.Error(), "debug_test.go")
	require.NoError(t, testutil.Recv(t, errB, "B's Sync onto A, once A's block gave up"))
}

// The label contexts are cached per label in a small table, not per queue: labels that
// share a slot take turns in it, and each drain still runs under its own queue's label.
func TestLabelContextsNameTheirLabelWhateverTheCacheHolds(t *testing.T) {
	for round := range 2 {
		for i := range 3 * labelSlots {
			label := fmt.Sprintf("q-%d", i)
			got, ok := pprof.Label(labelContext(label), ProfileLabel)
			require.True(t, ok)
			require.Equal(t, label, got, "round %d", round)
		}
	}
}

func TestSyncBlocksRunUnderTheirQueuesProfilerLabel(t *testing.T) {
	q := NewSerial("synced-queue")
	quiet := NewSerial("quiet-synced-queue", WithProfileLabels(false))
	profile := func() string {
		var buf bytes.Buffer
		require.NoError(t, pprof.Lookup("goroutine").WriteTo(&buf, 1))
		return buf.String()
	}
	var inside, insideQuiet, insideRoot string
	q.Sync(func() { inside = profile() })
	quiet.Sync(func() { insideQuiet = profile() })
	Global(Utility).Sync(func() { insideRoot = profile() })
	after := profile()
	require.Contains(t, inside, `"queue":"synced-queue"`)
	require.NotContains(t, insideQuiet, `"queue":"quiet-synced-queue"`)
	require.Contains(t, insideRoot, `"queue":"global.utility"`)
	require.NotContains(t, after, `"queue":"synced-queue"`, "the caller kept the Sync's label")
	require.NotContains(t, after, `"queue":"global.utility"`, "the caller kept the Sync's label")

	// A nested Sync from a block of a concurrent queue gives its caller its label back.
	c := NewConcurrent("outer-queue")
	labels := make(chan [2]string, 1)
	c.Async(func() {
		var in string
		q.Sync(func() { in = profile() })
		labels <- [2]string{in, profile()}
	})
	got := testutil.Recv(t, labels, "a Sync from a block")
	require.Contains(t, got[0], `"queue":"synced-queue"`)
	require.NotContains(t, got[1], `"queue":"synced-queue"`)
}

// A label's setter (what setLabels gives pprof.SetGoroutineLabels) carries exactly the labels
// of its label context, and on this Go it is the labelSetter, not the context itself: a
// goroutine switched to it runs under the queue's label, as the goroutine profile shows.
func TestALabelsSetterCarriesItsLabelContextsLabels(t *testing.T) {
	require.NotNil(t, pprofLabelKey, "runtime/pprof asked its context for no key")
	for _, label := range []string{"setter-a", "setter-b", ""} {
		c := newLabelCtx(label)
		require.IsType(t, &labelSetter{}, c.set)
		var got, want []string
		pprof.ForLabels(c.set, func(k, v string) bool { got = append(got, k+"="+v); return true })
		pprof.ForLabels(c.ctx, func(k, v string) bool { want = append(want, k+"="+v); return true })
		require.Equal(t, []string{ProfileLabel + "=" + label}, want)
		require.Equal(t, want, got)
	}
	q := NewSerial("setter-queue")
	in := make(chan string, 1)
	go func() {
		q.setLabels()
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		pprof.SetGoroutineLabels(context.Background())
		in <- buf.String()
	}()
	require.Contains(t, testutil.Recv(t, in, "a goroutine under the setter's labels"), `"queue":"setter-queue"`)
}
