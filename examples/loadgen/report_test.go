package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\techo\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t5\n"
	b, err := parseVmRSS(strings.NewReader(status))
	require.NoError(t, err)
	require.EqualValues(t, 12345*1024, b)

	_, err = parseVmRSS(strings.NewReader("Name:\tkthreadd\nState:\tS\n"))
	require.ErrorContains(t, err, "no VmRSS")
	_, err = parseVmRSS(strings.NewReader("VmRSS:\t12 MB\n"))
	require.ErrorContains(t, err, "odd VmRSS")
	_, err = parseVmRSS(strings.NewReader("VmRSS:\tlots kB\n"))
	require.Error(t, err)
}

func TestRSSReader(t *testing.T) {
	b, err := rssReader(os.Getpid())()
	require.NoError(t, err)
	require.Positive(t, b)
	b, err = rssReader(0)()
	require.NoError(t, err)
	require.Zero(t, b, "no -server-pid, no reading")
	_, err = rssReader(1 << 30)() // beyond pid_max
	require.ErrorContains(t, err, "server memory")
}

func TestParseCPU(t *testing.T) {
	// utime 250 and stime 40 ticks; the command holds a space and a ')'.
	stat := "4242 (my echo) srv) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 40 0 0 20 0 7 0 100 0 0\n"
	d, err := parseCPU([]byte(stat))
	require.NoError(t, err)
	require.Equal(t, 2900*time.Millisecond, d)

	for _, bad := range []string{
		"",
		"4242 echo S 1 2 3",                      // no command field
		"4242 (echo) S 1 4242 4242 0 -1 4194560", // cut short
		"4242 (echo) S 1 4242 4242 0 -1 4194560 1 0 0 0 x 40 0",
		"4242 (echo) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 -4 0",
	} {
		_, err := parseCPU([]byte(bad))
		require.ErrorContains(t, err, "server CPU", "%q", bad)
	}
}

func TestCPUReader(t *testing.T) {
	// Burn CPU until this process has a tick to show, for at most 10s.
	read := cpuReader(os.Getpid())
	deadline := time.Now().Add(10 * time.Second)
	var d time.Duration
	var err error
	for d == 0 && err == nil {
		require.True(t, time.Now().Before(deadline), "no CPU time read in 10s of spinning")
		for x := 0; x < 1e6; x++ {
			_ = x * x
		}
		d, err = read()
	}
	require.NoError(t, err)
	require.Positive(t, d)
	d, err = cpuReader(0)()
	require.NoError(t, err)
	require.Zero(t, d, "no -server-pid, no reading")
	_, err = cpuReader(1 << 30)()
	require.ErrorContains(t, err, "server CPU")
}

func TestCPUFigures(t *testing.T) {
	r := report{Mode: modeEcho, Connected: 1000, CPUConnect: 0.5, CPURun: 2, Msgs: 400000}
	r.cpuFigures()
	require.InDelta(t, 500, r.CPUPerConnUS, 1e-9)
	require.InDelta(t, 5, r.CPUPerMsgUS, 1e-9)

	r = report{Mode: modeBroadcast, Connected: 100, CPURun: 0.03, BroadcastDeliveries: 2000}
	r.cpuFigures()
	require.InDelta(t, 15, r.CPUPerMsgUS, 1e-9, "per delivery")

	r = report{Mode: modeIdle, CPURun: 1}
	r.cpuFigures()
	require.Zero(t, r.CPUPerConnUS, "nothing connected, nothing divided")
	require.Zero(t, r.CPUPerMsgUS, "idle serves no messages")
}

func TestBcastPayload(t *testing.T) {
	sent := time.Unix(1700000000, 123456789)
	p := bcastPayload(17, sent, 64)
	require.Len(t, p, 64)
	require.Equal(t, byte('B'), p[0], "the servers broadcast what starts with B")
	seq, at, ok := parseBcast(p)
	require.True(t, ok)
	require.Equal(t, 17, seq)
	require.True(t, sent.Equal(at))

	for _, bad := range []string{"", "xB1 2 ", "B", "B1", "B1 2", "Bx 2 ", "B1 y ", "B-1 2 "} {
		_, _, ok := parseBcast([]byte(bad))
		require.False(t, ok, "%q", bad)
	}
	// The smallest -size still holds the header of a broadcast sent in this century.
	_, _, ok = parseBcast(bcastPayload(maxBcasts, time.Now(), minSize))
	require.True(t, ok)
}

func TestBcastStateCountsLiveConnections(t *testing.T) {
	var got []event
	st := &bcastState{live: 3, seqs: make(map[int]*bseq), emit: func(ev event) { got = append(got, ev) }}
	st.record(0, 2*time.Millisecond)
	st.record(0, 5*time.Millisecond)
	require.Empty(t, got, "one connection still waits")
	st.record(0, 3*time.Millisecond)
	require.Equal(t, []event{{Ev: evBcast, Seq: 0, Got: 3, Last: 5 * time.Millisecond}}, got)

	// A connection lost while broadcast 1 is on its way no longer holds it up.
	got = nil
	st.record(1, time.Millisecond)
	st.record(1, 4*time.Millisecond)
	st.lose()
	require.Equal(t, []event{{Ev: evBcast, Seq: 1, Got: 2, Last: 4 * time.Millisecond}}, got)
	st.record(1, 9*time.Millisecond) // a straggler after the report changes nothing
	require.Len(t, got, 1)
}

func TestReportFigures(t *testing.T) {
	cfg := config{URL: "ws://127.0.0.1:1/ws", Conns: 4, Procs: 2, Mode: modeBroadcast, Duration: time.Second, Size: 64}
	r := newReport(cfg)
	r.RSSBefore = 10 << 20
	r.connected([]*event{
		{Connected: 2, Took: 300 * time.Millisecond},
		nil, // a member gone before it connected
		{Connected: 1, Failed: 1, Took: 500 * time.Millisecond, Errors: []string{"dial: refused"}},
	})
	require.Equal(t, 3, r.Connected)
	require.Equal(t, 1, r.Failed)
	require.InDelta(t, 6.0, r.ConnectRate, 1e-9)
	r.RSSEnd = 10<<20 + 3*4096
	var h1, h2 hist
	h1.add(time.Millisecond)
	h2.add(3 * time.Millisecond)
	r.lasts = []time.Duration{time.Millisecond, 2 * time.Millisecond, 8 * time.Millisecond}
	r.results([]*workerResult{
		{Msgs: 10, Elapsed: time.Second, RTT: h1},
		nil, // a member that never reported
		{Msgs: 30, Errors: 1, Lost: 1, Elapsed: 2 * time.Second, RTT: h2, Errs: []string{"read: EOF"}},
	})
	require.InDelta(t, 4096.0, r.BytesPerConn, 1e-9)
	require.EqualValues(t, 40, r.Msgs)
	require.InDelta(t, 20.0, r.MsgsPerSec, 1e-9, "over the longest worker's time")
	require.InEpsilon(t, 1.0, r.RTTP50, 0.01)
	require.InEpsilon(t, 3.0, r.RTTP99, 0.01)
	require.InDelta(t, 2.0, r.LastP50, 1e-9)
	require.InDelta(t, 8.0, r.LastP99, 1e-9)
	require.Equal(t, []string{"dial: refused", "read: EOF"}, r.ErrorLog)

	var buf bytes.Buffer
	require.NoError(t, r.writeJSON(&buf))
	var back map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	require.EqualValues(t, 4096, back["bytes_per_conn"])
	require.EqualValues(t, 8, back["last_p99_ms"])
	buf.Reset()
	require.NoError(t, r.writeTable(&buf))
	require.Contains(t, buf.String(), "4.0 KiB per connection")
	require.Contains(t, buf.String(), "last receiver p50 2.000ms p99 8.000ms")
}
