package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of samples, 0 for none.
// samples is not modified.
func percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[rank(q, len(s))-1]
}

// rank is the 1-based nearest rank of quantile q among n values.
func rank(q float64, n int) int {
	r := int(math.Ceil(q * float64(n)))
	return min(max(r, 1), n)
}

// growth is the ratio between a histogram's neighbouring bucket bounds: quantiles read from
// it are within 1% of the true sample.
const growth = 1.01

var logGrowth = math.Log(growth)

// hist counts durations in logarithmic buckets, so that a child process can send millions
// of round-trip times to its parent in a few kilobytes and the parent can merge them.
// The zero value is empty and ready.
type hist struct {
	Buckets map[int]uint64 `json:"buckets"`
	N       uint64         `json:"n"`
	Max     time.Duration  `json:"max"`
}

func bucketOf(d time.Duration) int {
	if d < 1 {
		d = 1
	}
	return int(math.Log(float64(d)) / logGrowth)
}

// add records one duration.
func (h *hist) add(d time.Duration) {
	if h.Buckets == nil {
		h.Buckets = make(map[int]uint64)
	}
	h.Buckets[bucketOf(d)]++
	h.N++
	h.Max = max(h.Max, d)
}

// merge adds o's counts to h.
func (h *hist) merge(o hist) {
	if h.Buckets == nil {
		h.Buckets = make(map[int]uint64, len(o.Buckets))
	}
	for b, n := range o.Buckets {
		h.Buckets[b] += n
	}
	h.N += o.N
	h.Max = max(h.Max, o.Max)
}

// quantile returns the nearest-rank q-quantile, as the geometric middle of its bucket (and
// never above the largest sample); 0 when empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.N == 0 {
		return 0
	}
	keys := make([]int, 0, len(h.Buckets))
	for b := range h.Buckets {
		keys = append(keys, b)
	}
	slices.Sort(keys)
	want := uint64(rank(q, int(min(h.N, math.MaxInt))))
	var seen uint64
	for _, b := range keys {
		seen += h.Buckets[b]
		if seen >= want {
			return min(time.Duration(math.Exp((float64(b)+0.5)*logGrowth)), h.Max)
		}
	}
	return h.Max
}
