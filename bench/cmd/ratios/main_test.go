package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const sample = `goos: linux
BenchmarkSerialAsync-2          	10000000	       100.0 ns/op
BenchmarkSerialAsync-2          	10000000	       140.0 ns/op
BenchmarkSerialAsync-2          	10000000	       120.0 ns/op
BenchmarkSerialPeerChannel-2    	10000000	        50.0 ns/op
BenchmarkSerialPeerMutexAppend-2	10000000	        80.0 ns/op
BenchmarkIdleQueue-2            	       1	 900000000 ns/op	  248.0 bytes/queue	  236.5 MiB/1M-queues	  0 goroutines/queue
BenchmarkIdlePeerGoroutineAndChannel-2 	       1	 90000000 ns/op	  4136 bytes/queue	  3944 MiB/1M-queues	  1.000 goroutines/queue
PASS
`

func TestParseMedians(t *testing.T) {
	m, err := parse(strings.NewReader(sample))
	require.NoError(t, err)
	require.Equal(t, 120.0, m["SerialAsync"]["ns/op"])
	require.Equal(t, 248.0, m["IdleQueue"]["bytes/queue"])
	require.Equal(t, 2.5, median([]float64{4, 1, 3, 2}), "even count: the mean of the middle two")
}

func TestReport(t *testing.T) {
	m, err := parse(strings.NewReader(sample))
	require.NoError(t, err)
	var out bytes.Buffer
	report(&out, m)
	s := out.String()
	require.Regexp(t, `vs buffered channel \+ receiver\s+120 / 50\s+ns/op =   2.40×  bar ≤ 0.50×: MISSED`, s)
	require.Regexp(t, `vs bare mutex-guarded append\s+120 / 80\s+ns/op =   1.50×  bar ≤ 2.00×: met`, s)
	require.Contains(t, s, "IdleQueue goroutines/queue")
	require.Regexp(t, `IdleQueue bytes/queue\s+248 bytes/queue  bar ≤ 256: met`, s)
	require.NotContains(t, s, "pond", "no figures, no line")
}
