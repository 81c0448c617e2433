package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// Two examples/echo nodes share their broadcast room through a NATS server (in-process);
// loadgen spreads its connections over both with a comma-separated -url, and every
// broadcast, sent from a connection on the first node, reaches every connection on both.
func TestBroadcastOverTwoNodes(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second))
	urlA, _ := echoServer(t, "-nats", ns.ClientURL())
	urlB, _ := echoServer(t, "-nats", ns.ClientURL())
	warmUp(t, urlA, urlB)

	var out, errOut bytes.Buffer
	args := []string{"-url", urlA + "," + urlB, "-conns", "40", "-procs", "2", "-mode", "broadcast",
		"-broadcasts", "5", "-duration", "20s", "-json", "-q"}
	require.Equal(t, 0, parentMain(context.Background(), args, &out, &errOut), errOut.String())
	var r report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r))
	require.Equal(t, 40, r.Connected)
	require.Equal(t, 5, r.BroadcastsComplete)
	require.Equal(t, 5*40, r.BroadcastDeliveries, "every connection on both nodes")
	require.Zero(t, r.Errors, r.ErrorLog)
	require.Equal(t, urlA+","+urlB, r.URL)
}

// warmUp keeps a member on each node for the rest of the test (so both stay subscribed to
// the room) and waits until a broadcast from a gets to b: the nodes are linked. A broadcast
// sent before b's subscription reached NATS is lost, so it sends again every 100ms, within
// a bounded 10s. Then it sends "Bwarm end" and waits for it on b: as a node's broadcasts
// keep their order, every earlier "Bwarm" has then been served on both nodes, and none can
// reach loadgen's connections.
func warmUp(t *testing.T, a, b string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, _, err := websocket.Dial(ctx, a, nil)
	require.NoError(t, err)
	cb, _, err := websocket.Dial(ctx, b, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ca.CloseNow(); _ = cb.CloseNow() })
	got, end := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(end)
		first := true
		for {
			_, data, err := cb.Read(ctx)
			if err != nil {
				return
			}
			if first && strings.HasPrefix(string(data), "Bwarm") {
				first = false
				close(got)
			}
			if string(data) == "Bwarm end" {
				return
			}
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		require.NoError(t, ca.Write(ctx, websocket.MessageText, []byte("Bwarm")))
		select {
		case <-got:
			require.NoError(t, ca.Write(ctx, websocket.MessageText, []byte("Bwarm end")))
			<-end
			require.NoError(t, ctx.Err(), "node b never got node a's broadcasts")
			go func() { // keep reading what the run broadcasts, for the rest of the test
				for {
					if _, _, err := ca.Read(context.Background()); err != nil {
						return
					}
				}
			}()
			go func() {
				for {
					if _, _, err := cb.Read(context.Background()); err != nil {
						return
					}
				}
			}()
			return
		case <-end:
			t.Fatalf("node b never got node a's broadcast: %v", ctx.Err())
		case <-tick.C:
		}
	}
}
