package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the program as main does, with a small number of transfers, and checks what it
// printed: money conserved, every transfer accounted for, every cache read a hit or a miss,
// and each pair stored once.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, []string{"-transfers", "3000", "-accounts", "5", "-workers", "4", "-reads", "2000"}))

	var accounts, each, transfers, workers, done, refused, before, after, reads, hits, misses, writes int
	_, err := fmt.Fscanf(&out, "accounts: %d, %d each\n", &accounts, &each)
	require.NoError(t, err, out.String())
	_, err = fmt.Fscanf(&out, "transfers: %d made by %d goroutines, %d done, %d refused for lack of funds\n", &transfers, &workers, &done, &refused)
	require.NoError(t, err)
	_, err = fmt.Fscanf(&out, "total before: %d\n", &before)
	require.NoError(t, err)
	_, err = fmt.Fscanf(&out, "total after:  %d\n", &after)
	require.NoError(t, err)
	_, err = fmt.Fscanf(&out, "cache: %d reads, %d hits, %d misses, %d writes\n", &reads, &hits, &misses, &writes)
	require.NoError(t, err)
	require.Zero(t, out.Len(), "unexpected output: %q", out.String())

	require.Equal(t, 5, accounts)
	require.Equal(t, 10_000, each)
	require.Equal(t, 3000, transfers)
	require.Equal(t, 4, workers)
	require.Equal(t, 3000, done+refused)
	require.Equal(t, 5*10_000, before)
	require.Equal(t, before, after)
	require.Equal(t, 2000, reads)
	require.Equal(t, reads, hits+misses)
	require.Equal(t, len(pairs), writes, "each pair is stored exactly once")
	require.GreaterOrEqual(t, misses, len(pairs), "each pair misses at least once")
}

// TestRunNothing: no transfers and no reads is a valid, if dull, run.
func TestRunNothing(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, []string{"-transfers", "0", "-reads", "0"}))
	require.Contains(t, out.String(), "transfers: 0 made by 8 goroutines, 0 done, 0 refused")
	require.Contains(t, out.String(), "total after:  160000\n")
	require.Contains(t, out.String(), "cache: 0 reads, 0 hits, 0 misses, 0 writes\n")
}

// TestRefusals: with small balances most transfers are refused for lack of funds; a refused
// transfer must change nothing, so the books still balance.
func TestRefusals(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, []string{"-transfers", "5000", "-accounts", "3", "-balance", "20", "-reads", "0"}))
	var done, refused int
	_, err := fmt.Sscanf(lineWith(t, out.String(), "transfers: "), "transfers: 5000 made by 8 goroutines, %d done, %d refused for lack of funds", &done, &refused)
	require.NoError(t, err)
	require.Equal(t, 5000, done+refused)
	require.Positive(t, refused, "amounts are up to 50, balances 20: some must be refused")
	require.Positive(t, done)
	require.Contains(t, out.String(), "total before: 60\n")
	require.Contains(t, out.String(), "total after:  60\n")
}

func lineWith(t *testing.T, s, prefix string) string {
	t.Helper()
	for line := range strings.Lines(s) {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	t.Fatalf("no line starting with %q in %q", prefix, s)
	return ""
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-accounts", "1"}, {"-workers", "0"}, {"-transfers", "-1"}, {"-reads", "-1"}, {"-balance", "-1"}, {"-nope"}} {
		var out bytes.Buffer
		require.Error(t, run(&out, args), "args %q", args)
	}
}
