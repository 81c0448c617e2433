package queue

import (
	"context"
	osexec "os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A copy of a Guarded would share its queue but not its value: go vet must say so.
func TestGoVetReportsACopiedGuarded(t *testing.T) {
	gobin, err := osexec.LookPath("go")
	require.NoError(t, err, "the go command runs these tests, so it is on PATH")
	out, err := osexec.Command(gobin, "vet", "./testdata/copyguarded").CombinedOutput()
	require.Error(t, err, "go vet accepted a copied Guarded:\n%s", out)
	require.Contains(t, string(out), "copies lock value")
	require.Contains(t, string(out), "main.go:9")
}

// Guarded.Async makes no closure: the item carries the caller's func and the value's shared
// ext. 1,000 blocks pile up on a suspended queue (the deque's chunks, one per 32, round to 0
// per call in AllocsPerRun), then run in order on the value.
func TestGuardedAsyncAllocatesNothing(t *testing.T) {
	g := NewGuarded([]int(nil))
	g.Queue().Suspend()
	n := 0
	add := func(s *[]int) { *s = append(*s, n); n++ } // n: only the blocks touch it
	allocs := testing.AllocsPerRun(1000, func() { g.Async(add) })
	require.Zero(t, allocs, "allocations per Guarded.Async")
	g.Queue().Resume()
	var got []int
	g.Sync(func(s *[]int) { got = *s })
	require.Len(t, got, 1001)
	for i, v := range got {
		require.Equal(t, i, v)
	}
	require.NoError(t, g.Queue().Close(context.Background()))
}

// The closure-free item goes through every way a block runs: plain, under a panic handler
// (which catches its panic), with call sites recorded, and observed.
func TestGuardedAsyncRunsOnTheValueWhateverTheQueuesOptions(t *testing.T) {
	panics := make(chan any, 1)
	rec := &recorder{}
	for name, opts := range map[string][]Option{
		"plain":     nil,
		"handler":   {WithPanicHandler(func(r any, _ []byte) { panics <- r })},
		"callsites": {WithCallSites(true)},
		"observed":  {WithObserver(rec)},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewGuarded(0, opts...)
			for range 100 {
				g.Async(func(v *int) { *v++ })
			}
			if name == "handler" {
				g.Async(func(v *int) { panic(*v) })
				require.Equal(t, 100, testutil.Recv(t, panics, "the handled panic"))
			}
			var got int
			g.Sync(func(v *int) { got = *v })
			require.Equal(t, 100, got)
			if name == "observed" {
				started := 0
				for _, e := range rec.list() {
					if strings.HasPrefix(e, "started ") {
						started++
					}
				}
				require.Equal(t, 101, started, "the observer saw the 100 Async blocks and the Sync")
			}
			require.NoError(t, g.Queue().Close(context.Background()))
		})
	}
}

// Guarded.Sync makes no closure that escapes: a Sync onto an idle value allocates nothing.
func TestGuardedSyncAllocatesNothing(t *testing.T) {
	defer specificsUsed.Store(specificsUsed.Swap(false)) // specifics cost a Sync allocations; no test runs beside this one
	g := NewGuarded(0)
	inc := func(v *int) { *v++ }
	g.Sync(inc) // the label cache's first use
	allocs := testing.AllocsPerRun(200, func() { g.Sync(inc) })
	require.Zero(t, allocs, "allocations per Guarded.Sync")
	g.Sync(func(v *int) { require.Equal(t, 202, *v) })
}

// Guarded.Async takes Queue.Async's short path for a plain value: once the value's queue is
// closed, it still panics as Queue.Async does, and the block never runs.
func TestGuardedAsyncOnAClosedValuePanics(t *testing.T) {
	g := NewGuarded(0)
	require.NoError(t, g.Queue().Close(context.Background()))
	require.PanicsWithValue(t, `queue: Async on "guarded": queue: closed (submit before Close, or use TryAsync)`,
		func() { g.Async(func(v *int) { *v++ }) })
	require.Zero(t, g.Queue().Stats().Executed)
}
