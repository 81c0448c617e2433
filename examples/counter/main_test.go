package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCounterConservesMoney(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, []string{"-transfers", "20000", "-accounts", "5", "-workers", "4"}))
	s := out.String()
	require.Contains(t, s, "transfers: 20000")
	require.Contains(t, s, "total before: 50000\n")
	require.Contains(t, s, "total after:  50000\n")
	require.Contains(t, s, "cache hits: 10000 of 10000 reads")
}

func TestCounterRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	err := run(&out, []string{"-accounts", "1"})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "-accounts >= 2"))
	require.Error(t, run(&out, []string{"-nope"}))
}
