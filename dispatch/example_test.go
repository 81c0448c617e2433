package dispatch_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dispatchkit/dispatchkit/dispatch"
	"github.com/dispatchkit/dispatchkit/queue"
)

func ExampleGroup() {
	var g dispatch.Group
	work := queue.NewConcurrent("work")
	var total atomic.Int64
	for i := 1; i <= 10; i++ {
		g.Async(work, func() { total.Add(int64(i)) })
	}
	if err := g.Wait(context.Background()); err != nil {
		fmt.Println(err)
	}
	fmt.Println(total.Load())
	// Output: 55
}

func ExampleApply() {
	squares := make([]int, 8)
	dispatch.Apply(queue.NewConcurrent("cpu"), len(squares), func(i int) {
		squares[i] = i * i // each index is written by exactly one iteration
	})
	fmt.Println(squares)
	// Output: [0 1 4 9 16 25 36 49]
}

func ExampleAfter() {
	q := queue.NewSerial("ui")
	done := make(chan struct{})
	dispatch.After(10*time.Millisecond, q, func() {
		fmt.Println("later")
		close(done)
	})
	cancelled := dispatch.After(time.Hour, q, func() { fmt.Println("never") })
	cancelled.Cancel()
	<-done
	// Output: later
}

func ExampleNewTimer() {
	q := queue.NewSerial("ticker")
	ticks := 0
	done := make(chan struct{})
	var t *dispatch.Source
	t = dispatch.NewTimer(q, 5*time.Millisecond, time.Millisecond, func() {
		ticks++ // on q: no lock needed
		if ticks == 3 {
			t.Cancel()
		}
	})
	t.SetCancelHandler(func() {
		fmt.Println("ticked", ticks, "times")
		close(done)
	})
	t.Resume() // sources start suspended
	<-done
	// Output: ticked 3 times
}

func ExampleNewDataAdd() {
	q := queue.NewSerial("progress")
	var calls int
	var sum uint64
	progress := dispatch.NewDataAdd(q, func(n uint64) { calls++; sum += n })
	for range 1000 {
		progress.Merge(1) // from anywhere, as often as you like
	}
	progress.Resume() // everything merged while suspended arrives in one call
	q.Sync(func() { fmt.Println(calls, sum) })
	progress.Cancel()
	// Output: 1 1000
}
