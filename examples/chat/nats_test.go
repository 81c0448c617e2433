package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/wsserver/natsbroker"
)

// startNATS runs a real NATS server in-process on a free loopback port.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(waitTimeout), "the NATS server did not start")
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// chatNode is one chat process on a NATS server.
type chatNode struct {
	app    *chat
	url    string
	broker *natsbroker.Broker
	stop   func() // as the command stops: Shutdown, then the goodbyes; once
}

// startNode serves a chat node whose presence is re-announced every `every`.
func startNode(t *testing.T, natsURL string, every time.Duration) *chatNode {
	t.Helper()
	b, err := natsbroker.Connect(natsURL, natsbroker.Options{})
	require.NoError(t, err)
	app := newChatNode(newCluster(b, every))
	srv := httptest.NewServer(app.routes())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			require.NoError(t, app.ws.Shutdown(ctx))
			srv.Close()
			require.NoError(t, app.closeCluster())
			require.NoError(t, b.Close())
		})
	}
	t.Cleanup(stop)
	return &chatNode{app: app, url: srv.URL, broker: b, stop: stop}
}

// nextAny reads the next message, whatever its type.
func (c *peer) nextAny() map[string]any {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, data, err := c.ws.Read(ctx)
	require.NoError(c.t, err)
	var m map[string]any
	require.NoError(c.t, json.Unmarshal(data, &m))
	return m
}

// presenceIs reads presence updates until one lists exactly want.
func (c *peer) presenceIs(want ...string) {
	c.t.Helper()
	slices.Sort(want)
	for {
		p := c.next("presence")
		var got []string
		for _, m := range p["members"].([]any) {
			got = append(got, m.(string))
		}
		if slices.Equal(got, want) {
			return
		}
	}
}

// Two chat nodes on one NATS server: presence merges the members of both, and what is said
// on one node reaches the other's clients, in order.
func TestTwoNodesShareRoomsAndPresence(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns.ClientURL(), time.Hour), startNode(t, ns.ClientURL(), time.Hour)
	ann, bob := dial(t, a.url), dial(t, b.url)
	ann.send(map[string]string{"type": "join", "room": "lobby", "nick": "ann"})
	ann.presenceIs("ann")
	bob.send(map[string]string{"type": "join", "room": "lobby", "nick": "bob"})
	// Each presence list proves the other node's subscriptions are on the NATS server (they
	// were made before the node's first presence message): from here, nothing is missed.
	bob.presenceIs("ann", "bob")
	ann.presenceIs("ann", "bob")

	for i := range 20 {
		ann.send(map[string]string{"type": "message", "text": fmt.Sprint("a", i)})
	}
	for i := range 20 {
		m := bob.next("message")
		require.Equal(t, fmt.Sprint("a", i), m["text"], "in order")
		require.Equal(t, "ann", m["from"])
	}
	bob.send(map[string]string{"type": "message", "text": "hi ann"})
	for i := range 20 {
		require.Equal(t, fmt.Sprint("a", i), ann.next("message")["text"], "once, in order")
	}
	require.Equal(t, "hi ann", ann.next("message")["text"])

	// A third client on A, in another room, sees nothing of the lobby; joining it, it sees both.
	cat := dial(t, a.url)
	cat.send(map[string]string{"type": "join", "room": "kitchen", "nick": "cat"})
	cat.presenceIs("cat")
	cat.send(map[string]string{"type": "join", "room": "lobby"})
	cat.presenceIs("ann", "bob", "cat")
	bob.presenceIs("ann", "bob", "cat")

	// bob leaves: everyone hears it, and presence on A drops him.
	require.NoError(t, bob.ws.Close(1000, "bye"))
	// The notice and B's goodbye travel on different subjects: either may come first.
	var left, gone bool
	for !left || !gone {
		m := ann.nextAny()
		switch m["type"] {
		case "system":
			left = left || m["text"] == "bob left"
		case "presence":
			gone = fmt.Sprint(m["members"]) == "[ann cat]"
		}
	}
	require.NoError(t, a.app.ws.Stats().BrokerErr)
	require.Zero(t, a.app.ws.Stats().BrokerDropped)
}

// A node that dies without saying goodbye (its NATS connection just ends) drops out of the
// others' presence once its state expires.
func TestPresenceExpiresWhenANodeDiesSilently(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns.ClientURL(), 50*time.Millisecond), startNode(t, ns.ClientURL(), 50*time.Millisecond)
	ann, bob := dial(t, a.url), dial(t, b.url)
	ann.send(map[string]string{"type": "join", "room": "lobby", "nick": "ann"})
	ann.presenceIs("ann")
	bob.send(map[string]string{"type": "join", "room": "lobby", "nick": "bob"})
	ann.presenceIs("ann", "bob")

	// B's link to NATS dies; B says nothing (its presence goes nowhere from now on).
	require.NoError(t, b.broker.Close())
	ann.presenceIs("ann")
	bob.presenceIs("bob") // and A's state expires on B
}

// A node that stops cleanly says goodbye: its members leave the others' lists at once (the
// states are believed for hours here, so expiry cannot be what removes them).
func TestStoppingNodeSaysGoodbye(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns.ClientURL(), time.Hour), startNode(t, ns.ClientURL(), time.Hour)
	ann, bob := dial(t, a.url), dial(t, b.url)
	ann.send(map[string]string{"type": "join", "room": "lobby", "nick": "ann"})
	ann.presenceIs("ann")
	bob.send(map[string]string{"type": "join", "room": "lobby", "nick": "bob"})
	ann.presenceIs("ann", "bob")
	b.stop()
	ann.presenceIs("ann")
}

// The command runs a node with -nats and stops cleanly; an unreachable NATS server is a clear
// error at start.
func TestRunWithNATS(t *testing.T) {
	ns := startNATS(t)
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-nats", ns.ClientURL()}, &out) }()
	deadline := time.After(waitTimeout)
	for {
		// Take the channel before reading the output: a line written in between closes it.
		changed := out.changed()
		if strings.Contains(out.String(), "listening on") {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run ended early: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("run did not start:\n%s", out.String())
		case <-changed:
		}
	}
	require.Contains(t, out.String(), "sharing rooms through NATS at "+ns.ClientURL())
	cancel()
	select {
	case err := <-errc:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("run did not stop")
	}

	err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-nats", "nats://127.0.0.1:1"}, &out)
	require.ErrorContains(t, err, "connect to nats://127.0.0.1:1")
}

// syncBuffer is an output run may write to while the test reads it.
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	wake chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// changed returns a channel closed by the next Write. Take it before reading what was
// written, or a Write in between goes unnoticed.
func (b *syncBuffer) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wake == nil {
		b.wake = make(chan struct{})
	}
	return b.wake
}
