package queue

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestAssertions(t *testing.T) {
	parent := NewConcurrent("parent")
	child := NewSerial("child", WithTarget(parent))
	require.PanicsWithValue(t,
		`queue: AssertOn("child"): the caller is not running on "child" (submit this code to it with Async or Sync)`,
		func() { AssertOn(child) })
	AssertNotOn(child)
	res := make(chan []any, 1)
	child.Async(func() {
		var got []any
		for _, f := range []func(){
			func() { AssertOn(child) },
			func() { AssertOn(parent) }, // a queue targeting parent runs on it
			func() { AssertBarrier(child) },
			func() { AssertNotOn(child) },
			func() { AssertBarrier(parent) },
		} {
			got = append(got, func() (r any) { defer func() { r = recover() }(); f(); return nil }())
		}
		res <- got
	})
	got := testutil.Recv(t, res, "assertions in a block")
	require.Nil(t, got[0])
	require.Nil(t, got[1])
	require.Nil(t, got[2])
	require.Contains(t, got[3], "would wait for itself")
	require.Contains(t, got[4], "not running on \"parent\" as a barrier")
	parent.BarrierSync(func() { AssertBarrier(parent) })
	parent.Sync(func() { AssertOn(parent) })
}

func TestSetTargetOnlyWhileInactiveAndNeverInACycle(t *testing.T) {
	a := NewSerial("a", Inactive())
	b := NewSerial("b", WithTarget(a))
	require.ErrorIs(t, a.SetTarget(b), ErrTargetCycle)
	require.ErrorIs(t, a.SetTarget(a), ErrTargetCycle)
	c := NewSerial("c")
	require.NoError(t, a.SetTarget(c))
	require.Equal(t, c, a.Target())
	ran := make(chan bool, 1)
	a.Async(func() { ran <- c.IsCurrent() })
	a.Activate()
	require.True(t, testutil.Recv(t, ran, "a block on the new target"))
	require.ErrorIs(t, a.SetTarget(nil), ErrActive)
	require.ErrorIs(t, b.SetTarget(c), ErrActive)
	require.Error(t, Global(Default).SetTarget(c))
}

func TestQueueSpecificValuesAreFoundUpTheTargetChain(t *testing.T) {
	user := NewKey[string]("user")
	depth := NewKey[int]("depth")
	root := NewSerial("root")
	mid := NewConcurrent("mid", WithTarget(root))
	leaf := NewSerial("leaf", WithTarget(mid))
	SetSpecific(root, user, "alice")
	SetSpecific(mid, depth, 1)
	SetSpecific(leaf, depth, 2)

	v, ok := GetSpecific(mid, depth)
	require.True(t, ok)
	require.Equal(t, 1, v)
	_, ok = GetSpecific(leaf, user)
	require.False(t, ok, "GetSpecific looks at the queue itself only")
	_, ok = CurrentSpecific(user)
	require.False(t, ok, "outside any queue")

	type found struct {
		user  string
		depth int
	}
	res := make(chan found, 2)
	leaf.Async(func() {
		u, _ := CurrentSpecific(user)
		d, _ := CurrentSpecific(depth)
		res <- found{u, d}
	})
	require.Equal(t, found{"alice", 2}, testutil.Recv(t, res, "specifics in a leaf block"))
	mid.Sync(func() {
		u, _ := CurrentSpecific(user)
		d, _ := CurrentSpecific(depth)
		res <- found{u, d}
	})
	require.Equal(t, found{"alice", 1}, testutil.Recv(t, res, "specifics in a Sync"))
	require.Equal(t, "user", user.String())
}

func TestSpecificValuesDoNotKeepTheirQueueAlive(t *testing.T) {
	k := NewKey[[]byte]("big")
	collected := make(chan struct{})
	func() {
		q := NewSerial("short-lived")
		SetSpecific(q, k, make([]byte, 1<<20))
		runtime.AddCleanup(q, func(struct{}) { close(collected) }, struct{}{})
	}()
	for i := 0; i < 50; i++ {
		runtime.GC()
		select {
		case <-collected:
			return
		default:
			runtime.Gosched()
		}
	}
	testutil.Recv(t, collected, "the queue to be collected")
}
