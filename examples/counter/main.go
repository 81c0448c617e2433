// Command counter shows dispatchkit's model in a small program: state owned by queues, not
// guarded by locks.
//
//	go run ./examples/counter -transfers 100000
//
// A bank of accounts lives in queue.Guarded values: each balance belongs to its own serial
// queue, and only blocks on that queue touch it. Many goroutines move money between accounts
// at random with no mutex: a transfer withdraws on the source account's queue and, if the
// money was there, deposits on the destination's queue. No two blocks of one account overlap,
// so no update is lost, and the total is the same at the end. A read-mostly exchange-rate cache
// on a concurrent queue shows the other pattern: reads run side by side with Sync, writes run
// alone with BarrierAsync.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/dispatch"
	"github.com/dispatchkit/dispatchkit/queue"
)

func main() {
	if err := run(os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "counter:", err)
		os.Exit(1)
	}
}

type account struct {
	balance int
	moves   int
}

// run does the transfers and the cache reads and prints what happened.
func run(out io.Writer, args []string) error {
	fs := flag.NewFlagSet("counter", flag.ContinueOnError)
	fs.SetOutput(out)
	transfers := fs.Int("transfers", 100_000, "number of transfers")
	accounts := fs.Int("accounts", 16, "number of accounts")
	workers := fs.Int("workers", 8, "goroutines making transfers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *transfers < 0 || *accounts < 2 || *workers < 1 {
		return fmt.Errorf("need -transfers >= 0, -accounts >= 2, -workers >= 1")
	}

	bank := make([]*queue.Guarded[account], *accounts)
	for i := range bank {
		bank[i] = queue.NewGuarded(account{balance: 10_000}, queue.WithLabel(fmt.Sprint("account-", i)))
	}
	before := total(bank)

	var done dispatch.Group // counts transfers until their deposit (or refusal) has run
	var refused atomic.Int64
	var wg sync.WaitGroup
	per := *transfers / *workers
	for w := range *workers {
		n := per
		if w == 0 {
			n += *transfers % *workers
		}
		wg.Go(func() {
			for range n {
				from, to := rand.IntN(len(bank)), rand.IntN(len(bank)-1)
				if to >= from {
					to++
				}
				transfer(bank[from], bank[to], 1+rand.IntN(20), &done, &refused)
			}
		})
	}
	wg.Wait()
	if err := done.Wait(context.Background()); err != nil {
		return err
	}
	after := total(bank)

	hits := cacheDemo()
	fmt.Fprintf(out, "accounts:  %d\n", len(bank))
	fmt.Fprintf(out, "transfers: %d (%d refused for lack of funds)\n", *transfers, refused.Load())
	fmt.Fprintf(out, "total before: %d\n", before)
	fmt.Fprintf(out, "total after:  %d\n", after)
	fmt.Fprintf(out, "cache hits: %d of %d reads\n", hits, cacheReads)
	if before != after {
		return fmt.Errorf("money was created or lost: %d before, %d after", before, after)
	}
	return nil
}

// transfer withdraws on from's queue; the deposit is a block on to's queue, submitted by the
// withdrawal. Each step runs where the state it touches lives: no lock anywhere.
func transfer(from, to *queue.Guarded[account], amount int, done *dispatch.Group, refused *atomic.Int64) {
	done.Enter()
	from.Async(func(a *account) {
		if a.balance < amount {
			refused.Add(1)
			done.Leave()
			return
		}
		a.balance -= amount
		a.moves++
		to.Async(func(b *account) {
			b.balance += amount
			b.moves++
			done.Leave()
		})
	})
}

func total(bank []*queue.Guarded[account]) int {
	sum := 0
	for _, g := range bank {
		g.Sync(func(a *account) { sum += a.balance })
	}
	return sum
}

const cacheReads = 10_000

// cacheDemo reads a rate cache from many goroutines while one writer refreshes it.
func cacheDemo() int64 {
	cache := queue.NewConcurrent("rates")
	rates := map[string]float64{"EUR": 1.08}
	var hits atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range cacheReads / 8 {
				var ok bool
				cache.Sync(func() { _, ok = rates["EUR"] }) // reads run side by side
				if ok {
					hits.Add(1)
				}
			}
		})
	}
	for i := range 10 {
		cache.BarrierAsync(func() { rates["EUR"] = 1.08 + float64(i)/100 }) // a write runs alone
	}
	wg.Wait()
	cache.BarrierSync(func() {})
	return hits.Load()
}
