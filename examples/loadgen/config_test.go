package main

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const plenty = 1 << 20 // a file limit that never binds

func TestParseArgsDefaults(t *testing.T) {
	c, err := parseArgs(nil, io.Discard, plenty)
	require.NoError(t, err)
	require.Equal(t, "ws://127.0.0.1:8080/ws", c.URL)
	require.Equal(t, 100, c.Conns)
	require.Equal(t, 1, c.Procs)
	require.Equal(t, modeEcho, c.Mode)
	require.Equal(t, 10*time.Second, c.Duration)
	require.Equal(t, 20, c.Broadcasts)
	require.Empty(t, c.Src)
}

func TestParseArgsAll(t *testing.T) {
	c, err := parseArgs([]string{
		"-url", "ws://localhost:9/ws", "-conns", "19000", "-procs", "4",
		"-src", "127.0.0.1, 127.0.0.2,127.0.0.3", "-mode", "broadcast", "-duration", "30s",
		"-size", "128", "-rate", "5000", "-server-pid", "42", "-json", "-q", "-broadcasts", "5",
	}, io.Discard, 20000)
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
	}, c.Src)
	require.Equal(t, modeBroadcast, c.Mode)
	require.Equal(t, 42, c.ServerPID)
	require.True(t, c.JSON)
	require.True(t, c.Quiet)
	require.Equal(t, 5000.0, c.Rate)
}

func TestParseArgsRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-conns", "0"}, "-conns 0"},
		{[]string{"-conns", "2000000"}, "-conns 2000000"},
		{[]string{"-procs", "0"}, "-procs 0"},
		{[]string{"-procs", "65", "-conns", "1000"}, "-procs 65"},
		{[]string{"-procs", "3", "-conns", "2"}, "more than -conns"},
		{[]string{"-mode", "flood"}, `-mode "flood"`},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-duration", "11m"}, "-duration"},
		{[]string{"-connect-timeout", "-1s"}, "-connect-timeout"},
		{[]string{"-size", "8"}, "-size 8"},
		{[]string{"-size", "40000"}, "-size 40000"},
		{[]string{"-rate", "-1"}, "-rate"},
		{[]string{"-broadcasts", "0"}, "-broadcasts"},
		{[]string{"-conns", "10", "-senders", "11"}, "-senders"},
		{[]string{"-senders", "-1"}, "-senders"},
		{[]string{"-server-pid", "-3"}, "-server-pid"},
		{[]string{"-src", "127.0.0.300"}, "-src"},
		{[]string{"-url", "http://127.0.0.1/ws"}, "ws:// or wss://"},
		{[]string{"-url", "ws:///ws"}, "no host"},
		{[]string{"-url", "ws://127.0.0.1/ws", "stray"}, "unexpected arguments"},
		{[]string{"-nosuchflag"}, "not defined"},
	} {
		_, err := parseArgs(tc.args, io.Discard, plenty)
		require.ErrorContains(t, err, tc.msg, "%v", tc.args)
	}
}

func TestParseArgsFileLimit(t *testing.T) {
	// 19,000 connections in one process do not fit 20,000 files with the reserve...
	_, err := parseArgs([]string{"-conns", "19990"}, io.Discard, 20000)
	require.ErrorContains(t, err, "raise -procs")
	// ...but do over two processes.
	_, err = parseArgs([]string{"-conns", "19990", "-procs", "2"}, io.Discard, 20000)
	require.NoError(t, err)
}

func TestRemoteTargetsRefused(t *testing.T) {
	for _, u := range []string{
		"ws://10.0.0.1:8080/ws", "wss://8.8.8.8/ws", "ws://example.com/ws", "ws://[2001:db8::1]:80/ws",
		"ws://[::ffff:8.8.8.8]/ws", "ws://0.0.0.0:8080/ws", "ws://localhost.example.com/ws",
	} {
		_, err := parseArgs([]string{"-url", u}, io.Discard, plenty)
		require.ErrorIs(t, err, errRemote, u)
		_, err = parseArgs([]string{"-url", u, "-allow-remote"}, io.Discard, plenty)
		require.NoError(t, err, "-allow-remote %s", u)
	}
	for _, u := range []string{
		"ws://127.0.0.1:8080/ws", "ws://127.9.9.9/ws", "ws://[::1]:8080/ws", "ws://localhost:8080/ws",
		"wss://LOCALHOST./ws", "ws://app.localhost/ws", "ws://[::ffff:127.0.0.1]/ws",
	} {
		_, err := parseArgs([]string{"-url", u}, io.Discard, plenty)
		require.NoError(t, err, u)
	}
}

func TestRemoteSourcesRefused(t *testing.T) {
	_, err := parseArgs([]string{"-src", "127.0.0.1,192.168.1.10"}, io.Discard, plenty)
	require.ErrorIs(t, err, errRemote)
	_, err = parseArgs([]string{"-src", "127.0.0.1,192.168.1.10", "-allow-remote"}, io.Discard, plenty)
	require.NoError(t, err)
}

func TestShareSplitsConnsAndRate(t *testing.T) {
	c, err := parseArgs([]string{"-conns", "10", "-procs", "4", "-rate", "100"}, io.Discard, plenty)
	require.NoError(t, err)
	total := 0
	for i := range c.Procs {
		s := c.share(i)
		require.Equal(t, 1, s.Procs)
		require.Equal(t, 25.0, s.Rate)
		require.Contains(t, []int{2, 3}, s.Conns)
		require.NoError(t, s.check(plenty))
		total += s.Conns
	}
	require.Equal(t, 10, total)
}

func TestSeveralURLsSpreadTheConnections(t *testing.T) {
	c, err := parseArgs([]string{
		"-url", "ws://127.0.0.1:8081/ws, ws://127.0.0.1:8082/ws,ws://localhost:8083/ws",
		"-conns", "11", "-procs", "4",
	}, io.Discard, plenty)
	require.NoError(t, err)
	require.Equal(t, []string{"ws://127.0.0.1:8081/ws", "ws://127.0.0.1:8082/ws", "ws://localhost:8083/ws"}, c.targets())
	// Over all the processes, connection k goes to URL k mod 3: 4, 4 and 3 connections.
	per := map[string]int{}
	k := 0
	for i := range c.Procs {
		s := c.share(i)
		require.Equal(t, k, s.First, "child %d starts where the one before it stopped", i)
		require.NoError(t, s.check(plenty))
		for j := range s.Conns {
			require.Equal(t, c.targets()[k%3], s.target(j))
			per[s.target(j)]++
			k++
		}
	}
	require.Equal(t, 11, k)
	require.Equal(t, map[string]int{"ws://127.0.0.1:8081/ws": 4, "ws://127.0.0.1:8082/ws": 4, "ws://localhost:8083/ws": 3}, per)
	require.Equal(t, "ws://127.0.0.1:8081/ws", c.target(0), "the first connection (the broadcast sender) goes to the first URL")

	single, err := parseArgs([]string{"-url", "ws://127.0.0.1:9/ws"}, io.Discard, plenty)
	require.NoError(t, err)
	require.Equal(t, "ws://127.0.0.1:9/ws", single.target(5))

	for args, msg := range map[string]string{
		"ws://127.0.0.1:1/ws,ws://10.0.0.1/ws": "-url host 10.0.0.1",
		"ws://127.0.0.1:1/ws,":                 "want a ws:// or wss:// URL",
		"ws://127.0.0.1:1/ws,http://[::1]/ws":  "want a ws:// or wss:// URL",
	} {
		_, err := parseArgs([]string{"-url", args}, io.Discard, plenty)
		require.ErrorContains(t, err, msg, args)
	}
}
