package queue

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

func TestSerialQueuesOnASerialTargetTakeTurns(t *testing.T) {
	root := NewSerial("root")
	a := NewSerial("a", WithTarget(root))
	b := NewSerial("b", WithTarget(root))
	var running atomic.Int32
	body := func() {
		assert.EqualValues(t, 1, running.Add(1), "blocks under one serial target overlapped")
		running.Add(-1)
	}
	for range 2000 {
		a.Async(body)
		b.Async(body)
		root.Async(body)
	}
	syncDone(t, a)
	syncDone(t, b)
	syncDone(t, root)
	require.Equal(t, root, a.Target())
}

func TestConcurrentTargetBoundsEverythingBelowIt(t *testing.T) {
	withProcs(t, 4)
	pool := NewConcurrent("pool", WithWidth(2))
	var k tracker
	children := []*Queue{NewSerial("c1", WithTarget(pool)), NewSerial("c2", WithTarget(pool)), NewSerial("c3", WithTarget(pool))}
	gates := []*gate{newGate(), newGate(), newGate()}
	for i, c := range children {
		c.Async(func() { k.enter(); gates[i].block(); k.leave() })
	}
	testutil.Recv(t, gates[0].started, "first child")
	testutil.Recv(t, gates[1].started, "second child")
	notYet(t, gates[2].started, "a third child under a width-2 target")
	gates[0].open()
	testutil.Recv(t, gates[2].started, "third child")
	gates[1].open()
	gates[2].open()
	for _, c := range children {
		syncDone(t, c)
	}
	require.Equal(t, 2, k.max())
}

func TestWidthIsTheSmallestAlongTheChain(t *testing.T) {
	withProcs(t, 8)
	outer := NewConcurrent("outer", WithWidth(2))
	inner := NewConcurrent("inner", WithWidth(3), WithTarget(outer))
	require.Equal(t, 2, inner.Width())
	require.Equal(t, 1, NewConcurrent("under-serial", WithTarget(NewSerial("s"))).Width())
	require.Equal(t, 8, Global(Utility).Width())

	var k tracker
	gates := []*gate{newGate(), newGate(), newGate()}
	for _, g := range gates {
		inner.Async(func() { k.enter(); g.block(); k.leave() })
	}
	testutil.Recv(t, gates[0].started, "block 1")
	testutil.Recv(t, gates[1].started, "block 2")
	notYet(t, gates[2].started, "block 3 beyond the chain's width")
	for _, g := range gates {
		g.open()
	}
	syncDone(t, inner)
	require.Equal(t, 2, k.max())
}

func TestAQueueNeverRunsTwoOfItsBlocksBecauseOfAWideTarget(t *testing.T) {
	wide := NewConcurrent("wide", WithWidth(8))
	s := NewSerial("s", WithTarget(wide))
	var running atomic.Int32
	for range 5000 {
		s.Async(func() {
			assert.EqualValues(t, 1, running.Add(1))
			running.Add(-1)
		})
	}
	syncDone(t, s)
}

func TestFloodedQueueYieldsToItsSiblings(t *testing.T) {
	target := NewSerial("target")
	flood := NewSerial("flood", WithTarget(target))
	other := NewSerial("other", WithTarget(target))
	g := newGate()
	flood.Async(g.block)
	testutil.Recv(t, g.started, "the flood's first block")
	const n = 10_000
	var floodRan atomic.Int64
	for range n {
		flood.Async(func() { floodRan.Add(1) })
	}
	seen := make(chan int64, 1)
	other.Async(func() { seen <- floodRan.Load() })
	g.open()
	got := testutil.Recv(t, seen, "the sibling's block")
	require.Less(t, got, int64(n), "the sibling waited for the whole flood")
	syncDone(t, flood)
}

func TestSyncOnAChildHoldsItsSerialTarget(t *testing.T) {
	root := NewSerial("root")
	child := NewSerial("child", WithTarget(root))
	g := newGate()
	root.Async(g.block)
	testutil.Recv(t, g.started, "a block on the target")
	done := make(chan struct{})
	go func() {
		child.Sync(func() {})
		close(done)
	}()
	notYet(t, done, "Sync on a child while its serial target is busy")
	g.open()
	testutil.Recv(t, done, "Sync on the child")
	require.True(t, func() (in bool) { child.Sync(func() { in = root.IsCurrent() && child.IsCurrent() }); return }())
}

// SetTarget runs while others use the inactive queue: they ask its width and target (no lock
// orders those reads after the write: -race sees them in either order), then fill it, wait in
// Sync for it, and use the queues that target it.
func TestSetTargetDoesNotRaceWithTheQueuesUsers(t *testing.T) {
	q := NewSerial("q", Inactive())
	child := NewSerial("child", WithTarget(q))
	to := NewConcurrent("to", WithWidth(2), WithQoS(UserInitiated))
	ran := make(chan int, 4)
	synced := make(chan error, 1)
	read := make(chan int, 1)
	go func() {
		w := q.Width() + child.Width()
		if q.Target() == nil || q.QoS() > UserInteractive {
			w = -1
		}
		read <- w
		q.Async(func() { ran <- 1 })
		child.Async(func() { ran <- 2 })
		synced <- q.SyncContext(context.Background(), func(context.Context) { ran <- 3 })
	}()
	require.NoError(t, q.SetTarget(to))
	require.Equal(t, 2, testutil.Recv(t, read, "the queue's readers"))
	q.Activate()
	require.NoError(t, testutil.Recv(t, synced, "Sync onto the retargeted queue"))
	got := map[int]bool{}
	for range 3 {
		got[testutil.Recv(t, ran, "the retargeted queue's blocks")] = true
	}
	require.Len(t, got, 3)
	require.Same(t, to, q.Target())
}

// A queue made without WithQoS takes its target's class; SetTarget gives it the new one's.
func TestSetTargetTakesTheNewTargetsQoS(t *testing.T) {
	old := NewSerial("old", WithQoS(Background))
	to := NewConcurrent("to", WithQoS(UserInitiated))
	q := NewSerial("q", WithTarget(old), Inactive())
	own := NewSerial("own", WithTarget(old), WithQoS(Utility), Inactive())
	require.Equal(t, Background, q.QoS())
	require.NoError(t, q.SetTarget(to))
	require.NoError(t, own.SetTarget(to))
	require.Equal(t, UserInitiated, q.QoS())
	require.Equal(t, UserInitiated, q.Stats().QoS)
	require.Equal(t, Utility, own.QoS(), "a class given WithQoS stays")
	require.NoError(t, q.SetTarget(nil))
	require.NoError(t, own.SetTarget(nil))
	require.Same(t, Global(Default), q.Target())
	require.Equal(t, Default, q.QoS())
	require.Same(t, Global(Utility), own.Target())
	q.Activate()
	own.Activate()
	syncDone(t, q)
}
