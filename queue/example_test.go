package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/dispatchkit/dispatchkit/queue"
)

func ExampleQueue_Async() {
	q := queue.NewSerial("log")
	var lines []string // owned by q: only its blocks touch it
	for i := range 3 {
		q.Async(func() { lines = append(lines, fmt.Sprint("line ", i)) })
	}
	q.Sync(func() { fmt.Println(lines) }) // runs after the three blocks
	// Output: [line 0 line 1 line 2]
}

func ExampleQueue_Sync() {
	q := queue.NewSerial("counter")
	n := 0
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { q.Sync(func() { n++ }) }) // like a lock, without one
	}
	wg.Wait()
	q.Sync(func() { fmt.Println(n) })
	// Output: 100
}

func ExampleGuarded() {
	balance := queue.NewGuarded(100, queue.WithLabel("account"))
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { balance.Sync(func(b *int) { *b -= 7 }) })
	}
	wg.Wait()
	balance.Sync(func(b *int) { fmt.Println(*b) })
	// Output: 30
}

func ExampleQueue_BarrierAsync() {
	// A read-mostly cache: reads run side by side, a write runs alone between them.
	cache := queue.NewConcurrent("cache")
	data := map[string]string{"a": "1"}
	read := func(k string) (v string) {
		cache.Sync(func() { v = data[k] })
		return v
	}
	cache.BarrierAsync(func() { data["b"] = "2" }) // waits for earlier reads; later ones wait for it
	fmt.Println(read("a"), read("b"))
	// Output: 1 2
}

func ExampleNewSerial() {
	// Two serial queues that target one serial queue take turns on it: each keeps its own
	// order, and no block of one overlaps a block of the other, so they may share db's state.
	db := queue.NewSerial("db")
	users := queue.NewSerial("users", queue.WithTarget(db))
	orders := queue.NewSerial("orders", queue.WithTarget(db))
	rows := map[string]int{} // touched only by blocks running on db
	for range 3 {
		users.Async(func() { rows["users"]++ })
		orders.Async(func() { rows["orders"]++ })
	}
	users.Sync(func() {}) // after users' blocks
	orders.Sync(func() {})
	db.Sync(func() { fmt.Println(rows["users"], rows["orders"]) })
	// Output: 3 3
}

func ExampleQueue_TryAsync() {
	q := queue.NewSerial("bounded", queue.WithLimit(1), queue.Inactive())
	fmt.Println(q.TryAsync(func() {})) // accepted: one pending
	fmt.Println(q.TryAsync(func() {})) // the limit is reached; Async would wait for room
	q.Activate()
	fmt.Println(q.Close(context.Background())) // runs the accepted block
	// Output:
	// <nil>
	// queue: full
	// <nil>
}

func ExampleQueue_SyncContext() {
	q := queue.NewSerial("self")
	q.Sync(func() {
		// A Sync onto the queue that is running the caller would wait forever.
		err := q.SyncContext(context.Background(), func(context.Context) {})
		fmt.Println(errors.Is(err, queue.ErrWouldDeadlock))
	})
	// Output: true
}

func ExampleInactive() {
	q := queue.NewSerial("setup", queue.Inactive())
	q.Async(func() { fmt.Println("runs after Activate") })
	fmt.Println("configured")
	q.Activate()
	q.Sync(func() {})
	// Output:
	// configured
	// runs after Activate
}

func ExampleQueue_Close() {
	q := queue.NewSerial("jobs")
	for i := range 3 {
		q.Async(func() { fmt.Println("job", i) })
	}
	fmt.Println(q.Close(context.Background())) // waits for the accepted jobs
	fmt.Println(q.TryAsync(func() {}))
	// Output:
	// job 0
	// job 1
	// job 2
	// <nil>
	// queue: closed
}
