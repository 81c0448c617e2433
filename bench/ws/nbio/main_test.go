// nbio v1.6.8 races with itself under the race detector (nbhttp's listener goroutine sets a
// connection's address while its poller reads it: a report inside the library, not here),
// so this test runs only without -race.

//go:build !race

package main

import (
	"testing"

	"github.com/dispatchkit/dispatchkit/bench/ws/internal/peertest"
	"go.uber.org/goleak"
)

// nbio starts its task pool's goroutines once per process (package state), not per server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.New.func3"))
}

func TestServer(t *testing.T) { peertest.RunWithoutEmpty(t, run) }
