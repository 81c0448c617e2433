package main

import (
	"bytes"
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
	require.Contains(t, s, "| dispatchkit | 1000 | 5000 | 10.0 | 12.0 | 50000 | 1.50 / 9.00 | 4.00 / 6.00 | 120 / 8.0 / 1.25 | 0, 0 |")
	require.Contains(t, s, "| gorilla | 1000 | 4000 | 20.0 | 0.0 | 40000 | 2.00 / 10.00 | 5.00 / 12.00 (19/20 complete) | 0 / 10.0 / 0.00 | 3, 1 |")
	require.Contains(t, s, "| plain | 10 | 0 | 0.0 | – | – | – | – | 0 / – / – | 0, 0 |")
	require.Contains(t, s, "CPU per echo 0.80× gorilla (ahead, lower is better)")
	require.Contains(t, s, "CPU per broadcast delivery 0.62× plain (ahead, lower is better)")
	require.Contains(t, s, "idle memory 0.67× plain (ahead, lower is better)")
	require.Contains(t, s, "echo msg/s 0.83× plain (behind, higher is better)")
	require.Contains(t, s, "broadcast p99 2.00× plain (behind, lower is better)")
	require.Contains(t, s, "CPU per echo 0.80× gorilla")
	require.NotContains(t, s, "N=10:", "no dispatchkit row at N=10: no ratios")
}

func TestTableRejectsBadInput(t *testing.T) {
	for _, in := range []string{"no tab here\n", "x\t{not json\n", "x\t{\"mode\":\"flood\"}\n", "x\t\n"} {
		_, err := read(strings.NewReader(in))
		require.Error(t, err, "%q", in)
	}
}
