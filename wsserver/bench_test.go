package wsserver

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// BenchmarkEchoRoundTrip measures one closed-loop echo per iteration over loopback, on
// each of 8 connections at once.
func BenchmarkEchoRoundTrip(b *testing.B) { echoRoundTrip(b, 64) }

// BenchmarkEchoRoundTrip8K is BenchmarkEchoRoundTrip with 8 KiB messages: larger than the
// readiness transport's read buffer, so coder/websocket reads each, and a connection that
// dropped its coder Conn while idle makes it again for each (coder.go).
func BenchmarkEchoRoundTrip8K(b *testing.B) { echoRoundTrip(b, 8<<10) }

func echoRoundTrip(b *testing.B, size int) {
	s := New(HandlerFuncs{Message: func(c *Conn, m Message) { _ = c.Send(m) }}, Options{})
	hs := httptest.NewServer(s)
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	const conns = 8
	clients := make([]*websocket.Conn, conns)
	for i := range clients {
		clients[i] = dial(b, url)
	}
	msg := []byte(strings.Repeat("x", size))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/conns + 1
	for _, c := range clients {
		wg.Go(func() {
			ctx := context.Background()
			for range per {
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					b.Error(err)
					return
				}
				if _, _, err := c.Read(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	for _, c := range clients {
		c.CloseNow()
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = s.Shutdown(ctx)
}

// BenchmarkBroadcast measures one broadcast to a room of 2,000 members, spread over the
// handler queue (no network: the members' writers are held, so this is the fan-out into
// their buffers).
func BenchmarkBroadcast(b *testing.B) {
	s := New(HandlerFuncs{}, Options{SendBuffer: 1 << 20})
	room := s.Room("all")
	conns := make([]*Conn, 2000)
	for i := range conns {
		conns[i] = fakeConn(s, uint64(i))
		room.Join(conns[i])
	}
	room.Len()
	m := Text("hello")
	b.ReportAllocs()
	for b.Loop() {
		room.Broadcast(m)
		room.Queue().Sync(func() {}) // the fan-out has finished
		b.StopTimer()
		for _, c := range conns {
			c.mu.Lock()
			putOut(c.out)
			c.out, c.outBytes = nil, 0
			c.mu.Unlock()
		}
		b.StartTimer()
	}
}
