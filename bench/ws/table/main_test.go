package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const sample = `dispatchkit	{"mode":"idle","conns":1000,"connected":1000,"connects_per_s":5000,"bytes_per_conn":10240,"cpu_per_conn_us":120}
dispatchkit	{"mode":"echo","conns":1000,"bytes_per_conn":12288,"msgs_per_s":50000,"rtt_p50_ms":1.5,"rtt_p99_ms":9,"cpu_per_msg_us":8}
dispatchkit	{"mode":"broadcast","conns":1000,"broadcasts":20,"broadcasts_complete":20,"last_p50_ms":4,"last_p99_ms":6,"cpu_per_msg_us":1.25}
gorilla	{"mode":"idle","conns":1000,"connects_per_s":4000,"bytes_per_conn":20480,"failed":2}
gorilla	{"mode":"echo","conns":1000,"msgs_per_s":40000,"rtt_p50_ms":2,"rtt_p99_ms":10,"errors":1,"lost":1,"cpu_per_msg_us":10}
gorilla	{"mode":"broadcast","conns":1000,"broadcasts":20,"broadcasts_complete":19,"last_p50_ms":5,"last_p99_ms":12}
plain	{"mode":"idle","conns":1000,"bytes_per_conn":15360}
plain	{"mode":"echo","conns":1000,"msgs_per_s":60000,"cpu_per_msg_us":12}
plain	{"mode":"broadcast","conns":1000,"broadcasts":20,"broadcasts_complete":20,"last_p99_ms":3,"cpu_per_msg_us":2}
plain	{"mode":"idle","conns":10}
`

func TestTable(t *testing.T) {
	rows, err := read(strings.NewReader(sample))
	require.NoError(t, err)
	require.Len(t, rows, 4)
	require.Equal(t, 10, rows[0].n, "sorted by size")
	var out bytes.Buffer
	write(&out, rows)
	s := out.String()
	require.Contains(t, s, "| dispatchkit | 1000 | 1 | 5000 | 10.0 | 12.0 | 50000 | 1.50 / 9.00 | 4.00 / 6.00 | 120 / 8.0 / 1.25 | 0, 0 |")
	require.Contains(t, s, "| gorilla | 1000 | 1 | 4000 | 20.0 | 0.0 | 40000 | 2.00 / 10.00 | 5.00 / 12.00 (19/20 complete) | 0 / 10.0 / 0.00 | 3, 1 |")
	require.Contains(t, s, "| plain | 10 | 1 | 0 | 0.0 | – | – | – | – | 0 / – / – | 0, 0 |")
	require.Contains(t, s, "CPU per echo 0.80× gorilla (ahead, lower is better)")
	require.Contains(t, s, "CPU per broadcast delivery 0.62× plain (ahead, lower is better)")
	require.Contains(t, s, "idle memory 0.67× plain (ahead, lower is better)")
	require.Contains(t, s, "echo msg/s 0.83× plain (behind, higher is better)")
	require.Contains(t, s, "broadcast p99 2.00× plain (behind, lower is better)")
	require.Contains(t, s, "CPU per echo 0.80× gorilla")
	require.NotContains(t, s, "N=10:", "no dispatchkit row at N=10: no ratios")
}

// Three runs: each figure is the median, each ratio is taken within a run.
func TestTableMedians(t *testing.T) {
	runs := []string{
		"dispatchkit\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":100,\"cpu_per_msg_us\":20}\n" +
			"gorilla\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":50,\"cpu_per_msg_us\":30}\n" +
			"plain\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":80,\"cpu_per_msg_us\":25}\n",
		// A slow run for everyone: ours is still ahead of the best peer in it.
		"dispatchkit\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":40,\"cpu_per_msg_us\":40}\n" +
			"gorilla\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":20,\"cpu_per_msg_us\":60}\n" +
			"plain\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":30,\"cpu_per_msg_us\":50}\n",
		"dispatchkit\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":90,\"cpu_per_msg_us\":30}\n" +
			"gorilla\t{\"mode\":\"echo\",\"conns\":10,\"msgs_per_s\":100,\"cpu_per_msg_us\":20}\n" +
			"plain\t{\"mode\":\"idle\",\"conns\":10,\"bytes_per_conn\":1024}\n",
	}
	ins := make([]io.Reader, len(runs))
	for i, r := range runs {
		ins[i] = strings.NewReader(r)
	}
	rows, err := read(ins...)
	require.NoError(t, err)
	var out bytes.Buffer
	write(&out, rows)
	s := out.String()
	require.Contains(t, s, "| dispatchkit | 10 | 3 | – | – | 0.0 | 90 |", "the median of 100, 40, 90")
	require.Contains(t, s, "| gorilla | 10 | 3 | – | – | 0.0 | 50 |")
	require.Contains(t, s, "| plain | 10 | 2 | 0 | 1.0 | 0.0 | 55 |", "two echo runs: the mean of the middle two")
	// Per run: 100/80, 40/30, 90/100; their median is 40/30.
	require.Contains(t, s, "echo msg/s 1.25× (median of 3 runs: 1.25× plain, 1.33× plain, 0.90× gorilla; ahead, higher is better)")
	require.Contains(t, s, "CPU per echo 0.80× (median of 3 runs: 0.80× plain, 0.80× plain, 1.50× gorilla; ahead, lower is better)")
	require.Contains(t, s, "idle memory not measured", "ours has no idle run")
}

func TestMedianOf(t *testing.T) {
	require.Zero(t, medianOf(nil))
	require.Equal(t, 3.0, medianOf([]float64{5, 3, 1}))
	require.Equal(t, 2.5, medianOf([]float64{4, 1, 3, 2}))
	v := []float64{3, 1, 2}
	medianOf(v)
	require.Equal(t, []float64{3, 1, 2}, v, "the input is left alone")
}

func TestTableRejectsBadInput(t *testing.T) {
	for _, in := range []string{"no tab here\n", "x\t{not json\n", "x\t{\"mode\":\"flood\"}\n", "x\t\n"} {
		_, err := read(strings.NewReader(in))
		require.Error(t, err, "%q", in)
	}
}

// The mostly idle load ("NAME 1%" rows) is compared with the peers' rows of the same load,
// and ours under another transport is not taken for a peer.
func TestTableLoads(t *testing.T) {
	in := "dispatchkit\t{\"mode\":\"echo\",\"conns\":100,\"msgs_per_s\":100,\"cpu_per_msg_us\":20}\n" +
		"dispatchkit 1%\t{\"mode\":\"echo\",\"conns\":100,\"msgs_per_s\":10,\"cpu_per_msg_us\":40}\n" +
		"dispatchkit-goroutine\t{\"mode\":\"echo\",\"conns\":100,\"msgs_per_s\":500,\"cpu_per_msg_us\":5}\n" +
		"gws\t{\"mode\":\"echo\",\"conns\":100,\"msgs_per_s\":50,\"cpu_per_msg_us\":10}\n" +
		"gws 1%\t{\"mode\":\"echo\",\"conns\":100,\"msgs_per_s\":20,\"cpu_per_msg_us\":80}\n"
	rows, err := read(strings.NewReader(in))
	require.NoError(t, err)
	var out bytes.Buffer
	write(&out, rows)
	s := out.String()
	require.Contains(t, s, "- N=100: idle memory not measured; echo msg/s 2.00× gws (ahead")
	require.Contains(t, s, "- N=100 1%: idle memory not measured; echo msg/s 0.50× gws 1% (behind")
	require.Contains(t, s, "CPU per echo 0.50× gws 1% (ahead")
}
