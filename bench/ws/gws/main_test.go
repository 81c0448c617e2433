package main

import (
	"testing"

	"github.com/dispatchkit/dispatchkit/bench/ws/internal/peertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServer(t *testing.T) { peertest.Run(t, run) }
