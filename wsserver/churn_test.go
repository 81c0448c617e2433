package wsserver

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dispatchkit/dispatchkit/queue"
)

// Connect/disconnect churn of 10,000 connections leaves goroutines and heap at baseline.
func TestChurnLeavesNoTrace(t *testing.T) {
	const total, workers = 10_000, 16
	var opened, closed atomic.Int64
	ts := start(t, HandlerFuncs{
		Open:    func(c *Conn) { opened.Add(1) },
		Message: func(c *Conn, m Message) { _ = c.Send(m) },
		Close:   func(c *Conn, err error) { closed.Add(1) },
	}, Options{})
	before := heapAfterGC()
	ignore := goleak.IgnoreCurrent()

	var next atomic.Int64
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= total {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				c, _, err := websocket.Dial(ctx, ts.url, nil)
				if err == nil {
					// Every tenth one says something first, to exercise the writer too.
					if next.Load()%10 == 0 {
						err = c.Write(ctx, websocket.MessageText, []byte("hi"))
						if err == nil {
							_, _, err = c.Read(ctx)
						}
					}
					if err == nil {
						err = c.Close(websocket.StatusNormalClosure, "")
					}
				}
				cancel()
				if err != nil && failures.Add(1) == 1 {
					t.Logf("churn: %v", err)
				}
			}
		})
	}
	wg.Wait()
	require.Zero(t, failures.Load())
	require.Eventually(t, func() bool { return closed.Load() == total }, wait, time.Millisecond)
	require.Equal(t, int64(total), opened.Load())
	// A connection leaves the count just after its OnClose returns: the last one may still be
	// on its way out when closed reaches total.
	require.Eventually(t, func() bool { return ts.Stats().Connections == 0 }, wait, time.Millisecond)
	goleak.VerifyNone(t, ignore)
	after := heapAfterGC()
	t.Logf("heap before %d KiB, after %d connections %d KiB", before>>10, total, after>>10)
	// A leak of even 200 bytes per connection would show as 2 MB.
	require.Less(t, after, before+2<<20, "heap did not return to its baseline")
}

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rawUpgrade does a WebSocket handshake by hand, so that the client side of a memory
// measurement holds only its TCP connection: no goroutine, no buffers.
func rawUpgrade(addr string) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: rawUpgrade\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n\r\n"
	_ = nc.SetDeadline(time.Now().Add(wait))
	if _, err := nc.Write([]byte(req)); err != nil {
		nc.Close()
		return nil, err
	}
	// Read the response byte by byte up to its blank line, leaving nothing buffered.
	var head []byte
	one := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := nc.Read(one); err != nil {
			nc.Close()
			return nil, err
		}
		head = append(head, one[0])
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
		nc.Close()
		return nil, fmt.Errorf("upgrade refused: %q", head)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, nil
}

// memFigures is what n connections cost, per connection: heap and goroutine stacks after
// GC, and how many goroutines they added in all.
type memFigures struct {
	heap, stack, total float64
	goroutines         int
}

// fixedGoroutines bounds the goroutines that serve all connections, however many: the
// pollers, the reader pool, the handler queue's workers, keepalive, the listener.
func fixedGoroutines() int { return 8*runtime.GOMAXPROCS(0) + 8 }

// measureIdle opens n idle connections and returns the memory they take per connection:
// heap and goroutine stacks, server and raw client together. perConn is the goroutines a
// connection holds (1 under the goroutine transport, 0 under the readiness one): the
// measure waits for the goroutines that ran the upgrades to be gone, so that their stacks
// are not counted.
func measureIdle(t *testing.T, n int, opts Options, perConn int) memFigures {
	var opened atomic.Int64
	s := New(HandlerFuncs{Open: func(*Conn) { opened.Add(1) }}, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: s}
	go hs.Serve(ln)
	defer hs.Close()

	clients := make([]net.Conn, 0, n) // made before the baseline: the test's, not theirs
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	}()
	for range n {
		c, err := rawUpgrade(ln.Addr().String())
		require.NoError(t, err)
		clients = append(clients, c)
	}
	require.Eventually(t, func() bool { return opened.Load() == int64(n) }, wait, time.Millisecond)
	// net/http's connection goroutines end once ServeHTTP has returned.
	require.Eventually(t, func() bool { return runtime.NumGoroutine()-g0 <= perConn*n+fixedGoroutines() }, wait, time.Millisecond,
		"goroutines: %d before, %d with %d idle connections", g0, runtime.NumGoroutine(), n)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	f := memFigures{
		heap:       float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / float64(n),
		stack:      float64(int64(ms1.StackInuse)-int64(ms0.StackInuse)) / float64(n),
		goroutines: runtime.NumGoroutine() - g0,
	}
	f.total = f.heap + f.stack
	return f
}

// measureTCPPairs is the same for bare TCP connections accepted and held without a
// goroutine: the share of the figure above that is not the server's doing.
func measureTCPPairs(t *testing.T, n int) memFigures {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	conns := make([]net.Conn, 0, 2*n) // made before the baseline: the test's, not theirs
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		sc, err := ln.Accept()
		require.NoError(t, err)
		conns = append(conns, c, sc)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	f := memFigures{
		heap:  float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / float64(n),
		stack: float64(int64(ms1.StackInuse)-int64(ms0.StackInuse)) / float64(n),
	}
	f.total = f.heap + f.stack
	return f
}

// maxIdleServerShare bounds the server's share of an idle connection under the readiness
// transport (issue 18's aim was 3 KB). The share is the heap per connection less the
// client's half of a bare TCP pair's (BENCHMARKS.md lists it byte by byte); it measures
// ~1,225 B since an idle connection holds no coder/websocket Conn (coder.go; ~2,860 B
// before), varying by ~10 B between runs, so a field, a closure or a buffer more per
// connection that crosses a size class, or a coder Conn kept, fails here. An idle connection holds no goroutine
// (checked: the goroutines do not grow with the connections), so no stack of its own;
// the stacks of the goroutines that serve every connection (pollers, reader pool,
// handler workers: ~15-50 B per connection at 2,000, fewer at more) are logged apart, as
// their number depends on how many readers the connect burst happened to need.
const maxIdleServerShare = 1300

// TestMemoryPerIdleConnection measures what an idle connection costs (logged; run with -v)
// under each transport, and holds each under a ceiling: the readiness transport's idle
// connection has no goroutine and no read buffer, and its server share stays under
// maxIdleServerShare. The client sends a User-Agent, which the connection keeps (the
// default RequestHeaders), as most clients do.
func TestMemoryPerIdleConnection(t *testing.T) {
	const n = 2000
	pairs := measureTCPPairs(t, n)
	ready := measureIdle(t, n, Options{Transport: TransportReadiness}, 0)
	gor := measureIdle(t, n, Options{Transport: TransportGoroutine}, 1)
	readInServeHTTP = true
	inServe := measureIdle(t, n, Options{Transport: TransportGoroutine}, 1)
	readInServeHTTP = false
	share := ready.heap - pairs.heap/2
	t.Logf("per idle connection, %d connections (server + a raw client without goroutine):", n)
	t.Logf("  readiness transport:                  heap %.0f B + stacks %.0f B = %.0f B (%d goroutines in all)", ready.heap, ready.stack, ready.total, ready.goroutines)
	t.Logf("  goroutine transport, fresh goroutine: heap %.0f B + stacks %.0f B = %.0f B", gor.heap, gor.stack, gor.total)
	t.Logf("  goroutine transport, ServeHTTP's:     heap %.0f B + stacks %.0f B = %.0f B", inServe.heap, inServe.stack, inServe.total)
	t.Logf("  bare TCP pair (client + server socket structs): heap %.0f B + stacks %.0f B", pairs.heap, pairs.stack)
	t.Logf("  the server's share: readiness %.0f B of heap, no stack of its own (+ %.0f B of the shared goroutines' stacks); goroutine %.0f B",
		share, ready.stack, gor.total-pairs.total/2)
	t.Logf("  our structs: Conn %d B, queue.Queue %d B, batchWriter %d B, pollConn %d B, frameGuard %d B, requestInfo %d B, websocket.Conn %d B",
		unsafe.Sizeof(Conn{}), unsafe.Sizeof(queue.Queue{}), unsafe.Sizeof(batchWriter{}), unsafe.Sizeof(pollConn{}),
		unsafe.Sizeof(frameGuard{}), unsafe.Sizeof(requestInfo{}), unsafe.Sizeof(websocket.Conn{}))
	require.Less(t, gor.total, 24_000.0, "an idle connection costs far more than designed")
	if runtime.GOOS == "linux" {
		require.Less(t, ready.total, gor.total-3000, "the readiness transport saves the reader's stack and buffer")
		require.LessOrEqual(t, ready.goroutines, fixedGoroutines(), "an idle connection holds a goroutine")
		require.Less(t, share, float64(maxIdleServerShare), "an idle connection grew")
	}
	_ = bufio.NewReader
}
