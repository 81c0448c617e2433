package wsserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// pipeServe serves s over in-memory pipes (inside a synctest bubble) and returns a dialer;
// the cleanup shuts both down.
func pipeServe(t *testing.T, s *Server) func() *websocket.Conn {
	dial, _ := pipeServeListener(t, s)
	return dial
}

func pipeServeListener(t *testing.T, s *Server) (func() *websocket.Conn, *pipeListener) {
	hs := &http.Server{Handler: s}
	ln := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.dial(), nil }}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, ErrShutdown) {
			require.NoError(t, err)
		}
		require.NoError(t, hs.Close())
		<-served
		tr.CloseIdleConnections()
	})
	return func() *websocket.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		c, _, err := websocket.Dial(ctx, "ws://pipe/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		require.NoError(t, err)
		return c
	}, ln
}

// A client whose messages wait behind a slow handler (the reader paused by MaxPending) is
// alive: keepalive does not cut it for pongs the paused reader could not read.
func TestKeepaliveSparesPausedReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		handled := make(chan string, 10)
		closed := make(chan error, 1)
		s := New(HandlerFuncs{
			Message: func(c *Conn, m Message) { <-release; handled <- string(m.Data) },
			Close:   func(c *Conn, err error) { closed <- err },
		}, Options{MaxPending: 1, PingInterval: time.Second, PongTimeout: time.Second})
		c := pipeServe(t, s)()
		defer c.CloseNow()
		readErr := make(chan error, 1)
		go func() { _, _, err := c.Read(context.Background()); readErr <- err }() // answers pings
		writes := make(chan error, 3)
		go func() {
			for i := range 3 {
				writes <- c.Write(context.Background(), websocket.MessageText, []byte(strconv.Itoa(i)))
			}
		}()
		time.Sleep(time.Minute) // many ping intervals with the reader paused
		synctest.Wait()
		select {
		case err := <-readErr:
			close(release)
			t.Fatalf("the server cut a live client: %v", err)
		default:
		}
		close(release)
		for i := range 3 {
			require.Equal(t, strconv.Itoa(i), <-handled)
			require.NoError(t, <-writes)
		}
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
		require.NoError(t, <-closed)
		require.Error(t, <-readErr)
	})
}

// pacedConn reads at most 512 bytes every half second: a client that reads slowly but
// steadily (1 KiB/s).
type pacedConn struct{ net.Conn }

func (c pacedConn) Read(p []byte) (int, error) {
	time.Sleep(500 * time.Millisecond)
	return c.Conn.Read(p[:min(len(p), 512)])
}

// WriteTimeout bounds a write's progress, not the whole backlog: a client reading steadily
// gets all of it, however long that takes, and then Shutdown's 1001.
func TestWriteTimeoutSparesSteadyReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, size = 64, 1024 // 64 s of reading, 16 s per batch flush, against 2 s
		closed := make(chan error, 1)
		shut := make(chan error, 1)
		var s *Server
		s = New(HandlerFuncs{
			Message: func(c *Conn, m Message) {
				for i := range n {
					b := make([]byte, size)
					copy(b, strconv.Itoa(i))
					require.NoError(t, c.Send(Binary(b)))
				}
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					shut <- s.Shutdown(ctx)
				}()
			},
			Close: func(c *Conn, err error) { closed <- err },
		}, Options{WriteTimeout: 2 * time.Second, PingInterval: -1})
		_, ln := pipeServeListener(t, s)
		nc := ln.dial()
		defer nc.Close()
		rc := rawHandshake(t, pacedConn{nc})
		rc.send(frameBytes(finBit|opText, []byte("go")))
		for i := range n {
			op, p, err := rc.next()
			require.NoError(t, err, "message %d", i)
			require.Equal(t, byte(opBinary), op)
			require.Len(t, p, size)
			require.True(t, strings.HasPrefix(string(p), strconv.Itoa(i)))
		}
		code, _ := rc.expectClose()
		require.Equal(t, 1001, code)
		rc.send(frameBytes(finBit|opCloseF, closePayload(1001, "")))
		require.ErrorIs(t, <-closed, ErrShutdown)
		require.NoError(t, <-shut)
	})
}

// A bad frame that waits behind a slow handler (the close is queued after the messages before
// it) is still reported as what it was: keepalive does not take the wait for a dead peer.
func TestViolationBehindSlowHandlerKeepsItsCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		closed := make(chan error, 1)
		s := New(HandlerFuncs{
			Message: func(c *Conn, m Message) { <-release; _ = c.Send(m) },
			Close:   func(c *Conn, err error) { closed <- err },
		}, Options{PingInterval: time.Second, PongTimeout: time.Second})
		_, ln := pipeServeListener(t, s)
		nc := ln.dial()
		defer nc.Close()
		rc := rawHandshake(t, nc)
		type frame struct {
			op byte
			p  []byte
		}
		frames := make(chan frame, 16)
		go func() {
			defer close(frames)
			for {
				op, p, err := rc.next()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					continue // nothing for a while: the handler is slow
				}
				if err != nil {
					return
				}
				frames <- frame{op, p}
			}
		}()
		rc.send(frameBytes(finBit|opText, []byte("hello")), frameBytes(finBit|0x3, nil))
		time.Sleep(time.Minute) // the handler is slow: many ping intervals
		synctest.Wait()
		close(release)
		f := <-frames
		require.Equal(t, byte(opText), f.op)
		require.Equal(t, "hello", string(f.p))
		f = <-frames
		require.Equal(t, byte(opCloseF), f.op)
		require.Equal(t, "\x03\xea", string(f.p[:2])) // 1002
		rc.send(frameBytes(finBit|opCloseF, closePayload(1000, "")))
		require.ErrorIs(t, <-closed, ErrProtocol)
	})
}
