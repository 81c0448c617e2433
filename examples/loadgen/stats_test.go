package main

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	require.Zero(t, percentile(nil, 0.5))
	require.Equal(t, 7*time.Millisecond, percentile(ms(7), 0.99))

	samples := ms(5, 1, 4, 2, 3) // unsorted on purpose
	require.Equal(t, 3*time.Millisecond, percentile(samples, 0.5))
	require.Equal(t, 5*time.Millisecond, percentile(samples, 0.99))
	require.Equal(t, 1*time.Millisecond, percentile(samples, 0.01))
	require.Equal(t, ms(5, 1, 4, 2, 3), samples, "percentile sorts a copy")

	// Nearest rank over 20 broadcasts: p50 is the 10th value, p99 the 20th.
	var twenty []time.Duration
	for i := 20; i >= 1; i-- {
		twenty = append(twenty, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 10*time.Millisecond, percentile(twenty, 0.5))
	require.Equal(t, 20*time.Millisecond, percentile(twenty, 0.99))
	require.Equal(t, 19*time.Millisecond, percentile(twenty, 0.95))
}

func TestRank(t *testing.T) {
	require.Equal(t, 1, rank(0, 10))
	require.Equal(t, 1, rank(0.1, 10))
	require.Equal(t, 2, rank(0.11, 10))
	require.Equal(t, 10, rank(1, 10))
	require.Equal(t, 10, rank(1.5, 10))
	require.Equal(t, 99, rank(0.99, 100))
}

func TestHistQuantileWithinOnePercent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var samples []time.Duration
	var h hist
	for range 50_000 {
		// Round trips from 10µs to about a second, log-uniform like real latencies.
		d := time.Duration(float64(int64(10_000)<<r.IntN(17)) * (1 + r.Float64()))
		samples = append(samples, d)
		h.add(d)
	}
	require.EqualValues(t, len(samples), h.N)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		want := float64(percentile(samples, q))
		got := float64(h.quantile(q))
		require.InEpsilon(t, want, got, 0.01, "q=%v", q)
	}
	require.Equal(t, percentile(samples, 1), h.Max)
}

func TestHistMergeEqualsOneHist(t *testing.T) {
	var all, a, b hist
	for i := range 1000 {
		d := time.Duration(i*i+1) * time.Microsecond
		all.add(d)
		if i%3 == 0 {
			a.add(d)
		} else {
			b.add(d)
		}
	}
	var m hist
	m.merge(a)
	m.merge(b)
	require.Equal(t, all, m)
	for _, q := range []float64{0.5, 0.99} {
		require.Equal(t, all.quantile(q), m.quantile(q))
	}
}

func TestHistEdges(t *testing.T) {
	var h hist
	require.Zero(t, h.quantile(0.5), "empty")
	h.merge(hist{}) // merging an empty one into an empty one is fine
	require.Zero(t, h.N)
	h.add(0)
	h.add(-time.Second) // a clock step can make a latency negative: counted as the smallest
	require.EqualValues(t, 2, h.N)
	require.LessOrEqual(t, h.quantile(1), time.Duration(1))
	var one hist
	one.add(3 * time.Millisecond)
	require.InEpsilon(t, float64(3*time.Millisecond), float64(one.quantile(0.5)), 0.01)
	// A sample at the very bottom of its bucket: the bucket's middle would be above it.
	low := time.Duration(math.Ceil(math.Exp(float64(bucketOf(time.Second)) * logGrowth)))
	var h2 hist
	h2.add(low)
	require.Equal(t, bucketOf(time.Second), bucketOf(low))
	require.Equal(t, low, h2.quantile(0.5), "never above the largest sample")
}
