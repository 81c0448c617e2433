package main

import (
	"math/rand/v2"
	"sync"

	"github.com/dispatchkit/dispatchkit/queue"
)

// pairs are the keys the cache is asked for.
var pairs = []string{"EUR/USD", "USD/JPY", "GBP/USD", "USD/CHF", "AUD/USD", "USD/CAD", "NZD/USD", "EUR/GBP"}

// lookup is the slow source the cache spares: here a fixed rate per pair, so that readers can
// tell a wrong value from a right one.
func lookup(pair string) float64 {
	sum := 0
	for _, c := range pair {
		sum += int(c)
	}
	return float64(sum) / 100
}

// rateCache is a read-mostly map owned by a concurrent queue: any number of reads run at once
// (Sync), and a write (BarrierAsync) waits for the reads submitted before it, runs alone, and
// holds back the reads submitted after it. The map needs no lock: the queue's barrier is the
// write lock and its width the read lock, and nobody waits on the writer's side.
type rateCache struct {
	q       *queue.Queue
	rates   map[string]float64 // owned by q
	written int                // owned by q: entries stored
}

func newRateCache() *rateCache {
	return &rateCache{q: queue.NewConcurrent("rates"), rates: make(map[string]float64)}
}

// get returns the rate for pair, and whether the cache had it. On a miss it looks the rate up
// and stores it with a barrier, without waiting for the store.
func (c *rateCache) get(pair string) (rate float64, hit bool) {
	c.q.Sync(func() { rate, hit = c.rates[pair] }) // beside other reads
	if hit {
		return rate, true
	}
	rate = lookup(pair)
	c.q.BarrierAsync(func() {
		// Readers that missed the same pair at the same time each submit a store; the first
		// one stores it, and the barriers run one at a time, so the rest see it there.
		if _, ok := c.rates[pair]; !ok {
			c.rates[pair] = rate
			c.written++
		}
	})
	return rate, false
}

// run reads random pairs reads times from workers goroutines and counts the hits, the misses
// and the reads that returned a wrong rate (none, unless the cache is broken).
func (c *rateCache) run(reads, workers int) (hits, misses, bad int) {
	type tally struct{ hits, misses, bad int }
	tallies := make([]tally, workers) // each goroutine counts in its own
	var wg sync.WaitGroup
	for w := range workers {
		share := reads / workers
		if w < reads%workers {
			share++
		}
		wg.Go(func() {
			t := &tallies[w]
			for range share {
				pair := pairs[rand.IntN(len(pairs))]
				rate, hit := c.get(pair)
				if rate != lookup(pair) {
					t.bad++
				}
				if hit {
					t.hits++
				} else {
					t.misses++
				}
			}
		})
	}
	wg.Wait()
	for _, t := range tallies {
		hits, misses, bad = hits+t.hits, misses+t.misses, bad+t.bad
	}
	return hits, misses, bad
}

// writes returns how many entries were stored, once the stores submitted so far have run: a
// BarrierSync runs after every block submitted before it.
func (c *rateCache) writes() int {
	var n int
	c.q.BarrierSync(func() { n = c.written })
	return n
}
