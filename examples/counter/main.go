// Command counter shows dispatchkit's model in a small program: shared state owned by queues,
// not guarded by locks.
//
//	go run ./examples/counter -transfers 100000
//
// A bank of accounts lives in queue.Guarded values: each balance belongs to its own serial
// queue, and only blocks on that queue touch it. Many goroutines move money between random
// accounts with no mutex anywhere: a transfer is a block on the source account's queue that
// withdraws the amount and then submits the deposit as a block on the destination's queue.
// Blocks of one account never overlap, so no update is lost; nothing ever waits for a second
// account, so there is no lock order to get wrong and nothing to deadlock; and the total is the
// same at the end as at the start. A read-mostly rate cache on a concurrent queue shows the
// other pattern: reads run side by side with Sync, and a write runs alone as a BarrierAsync,
// after the reads before it and before the reads after it.
package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/dispatchkit/dispatchkit/queue"
)

func main() {
	if err := run(os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "counter:", err)
		os.Exit(1)
	}
}

// run makes the transfers and the cache reads that args ask for and prints what happened.
func run(out io.Writer, args []string) error {
	fs := flag.NewFlagSet("counter", flag.ContinueOnError)
	fs.SetOutput(out)
	transfers := fs.Int("transfers", 100_000, "number of transfers")
	accounts := fs.Int("accounts", 16, "number of accounts")
	workers := fs.Int("workers", 8, "goroutines making transfers, and reading the cache")
	balance := fs.Int("balance", 10_000, "opening balance of every account")
	reads := fs.Int("reads", 10_000, "cache reads")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *transfers < 0 || *accounts < 2 || *workers < 1 || *balance < 0 || *reads < 0 {
		return fmt.Errorf("need -transfers >= 0, -accounts >= 2, -workers >= 1, -balance >= 0, -reads >= 0")
	}

	b := newBank(*accounts, *balance)
	before := b.total()
	b.run(*transfers, *workers)
	after := b.total()
	done, deposits, refused := b.counts()

	c := newRateCache()
	hits, misses, bad := c.run(*reads, *workers)
	writes := c.writes()

	fmt.Fprintf(out, "accounts: %d, %d each\n", *accounts, *balance)
	fmt.Fprintf(out, "transfers: %d made by %d goroutines, %d done, %d refused for lack of funds\n", *transfers, *workers, done, refused)
	fmt.Fprintf(out, "total before: %d\n", before)
	fmt.Fprintf(out, "total after:  %d\n", after)
	fmt.Fprintf(out, "cache: %d reads, %d hits, %d misses, %d writes\n", *reads, hits, misses, writes)
	switch {
	case before != after:
		return fmt.Errorf("money was created or lost: %d before, %d after", before, after)
	case deposits != done:
		return fmt.Errorf("%d withdrawals but %d deposits", done, deposits)
	case done+refused != *transfers:
		return fmt.Errorf("%d transfers asked for, %d done and %d refused", *transfers, done, refused)
	case bad > 0:
		return fmt.Errorf("%d cache reads returned a wrong rate", bad)
	}
	return nil
}

// account is what one Guarded value holds; only blocks on its queue touch it.
type account struct {
	balance int
	out, in int // transfers withdrawn from and deposited to this account
	refused int // transfers from this account refused for lack of funds
}

type bank struct {
	accounts []*queue.Guarded[account]
	wg       sync.WaitGroup // one count per transfer, until its last step has run
}

func newBank(n, balance int) *bank {
	b := &bank{accounts: make([]*queue.Guarded[account], n)}
	for i := range b.accounts {
		b.accounts[i] = queue.NewGuarded(account{balance: balance}, queue.WithLabel(fmt.Sprint("account-", i)))
	}
	return b
}

// window is how many transfers each goroutine keeps in flight. Without it the submitters
// would outrun the queues: withdrawals would pile up on every account ahead of the deposits
// bound for it, most of the money would be in flight at any moment, and most transfers would
// be refused for lack of funds. Backpressure belongs to the submitter.
const window = 32

// run makes n transfers of random amounts between random accounts from workers goroutines,
// and returns when every one of them has finished (been deposited or refused).
func (b *bank) run(n, workers int) {
	var submitters sync.WaitGroup
	for w := range workers {
		share := n / workers
		if w < n%workers {
			share++
		}
		submitters.Go(func() {
			slots := make(chan struct{}, window)
			finished := func() { <-slots } // never blocks: the slot was taken before
			for range share {
				from := rand.IntN(len(b.accounts))
				to := rand.IntN(len(b.accounts) - 1)
				if to >= from {
					to++
				}
				slots <- struct{}{} // waits while window transfers of this goroutine are in flight
				b.transfer(from, to, 1+rand.IntN(50), finished)
			}
		})
	}
	submitters.Wait()
	// Submitting is not finishing: the last deposits may still be on their way.
	b.wg.Wait()
}

// transfer moves amount from one account to another, in two steps that each run where the
// state they touch lives.
//
// The withdrawal is a block on from's queue, so its check and its update cannot interleave
// with another transfer out of (or into) the same account: the balance never goes below zero
// and no update is lost. The deposit is submitted from inside the withdrawal, so it can only
// happen after the money has left; until it runs the money is in flight, in neither account,
// which is why a total is taken only once every transfer has finished. Neither step waits for
// the other account's queue (Async, never Sync), so unlike two mutexes taken in opposite
// orders by two opposite transfers, nothing can deadlock. finished runs once the transfer is
// over, in whichever block ends it.
func (b *bank) transfer(from, to, amount int, finished func()) {
	b.wg.Add(1)
	b.accounts[from].Async(func(a *account) {
		if a.balance < amount {
			a.refused++
			finished()
			b.wg.Done()
			return
		}
		a.balance -= amount
		a.out++
		b.accounts[to].Async(func(a *account) {
			a.balance += amount
			a.in++
			finished()
			b.wg.Done()
		})
	})
}

// total adds up the balances, each read on its account's queue.
func (b *bank) total() int {
	sum := 0
	for _, g := range b.accounts {
		g.Sync(func(a *account) { sum += a.balance })
	}
	return sum
}

// counts returns the withdrawals, deposits and refusals the accounts recorded. Once every
// transfer has finished, there are as many deposits as withdrawals.
func (b *bank) counts() (withdrawals, deposits, refused int) {
	for _, g := range b.accounts {
		g.Sync(func(a *account) {
			withdrawals += a.out
			deposits += a.in
			refused += a.refused
		})
	}
	return withdrawals, deposits, refused
}
