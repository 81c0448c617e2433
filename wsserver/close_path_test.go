package wsserver

import (
	"bufio"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A close decided while the writer is stopping (after its last flush, before it marks itself
// idle) is sent: closeWith started no writer because one was running.
func TestCloseWhileWriterStops(t *testing.T) {
	closed := make(chan error, 1)
	cl := newCloses()
	ts := start(t, HandlerFuncs{
		// Larger than a batch buffer: it goes through the writer goroutine.
		Message: func(c *Conn, m Message) { require.NoError(t, c.Send(Binary(pattern(batchBufSize+1)))) },
		Close:   cl.record,
	}, Options{})
	var once sync.Once
	hook := func(c *Conn) {
		if c.s == ts.Server {
			once.Do(func() { closed <- c.Close(websocket.StatusNormalClosure, "bye") })
		}
	}
	testHookWriterEnded.Store(&hook)
	t.Cleanup(func() { testHookWriterEnded.Store(nil) })
	c := dial(t, ts.url)
	defer c.CloseNow()
	write(t, c, "go")
	typ, got := read(t, c)
	require.Equal(t, websocket.MessageBinary, typ)
	require.Len(t, got, batchBufSize+1)
	require.NoError(t, testutil.Recv(t, closed, "Close from the hook"))
	require.Equal(t, websocket.StatusNormalClosure, readUntilClosed(t, c))
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}

// A panic in Authenticate gives its MaxConns slot back: after MaxConns such requests, an
// upgrade still succeeds.
func TestAuthenticatePanicReleasesSlot(t *testing.T) {
	s := New(HandlerFuncs{}, Options{MaxConns: 2, Authenticate: func(r *http.Request) (any, error) {
		if r.URL.Query().Get("panic") != "" {
			panic("auth bug")
		}
		return nil, nil
	}})
	hs := httptest.NewUnstartedServer(s)
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // net/http logs the panic
	hs.Start()
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, _, err := websocket.Dial(ctx, url+"?panic=1", nil)
		cancel()
		require.Error(t, err)
	}
	c := dial(t, url)
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
}

// A second Shutdown returns ErrShutdown, as its doc says.
func TestSecondShutdown(t *testing.T) {
	s := New(HandlerFuncs{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	require.ErrorIs(t, s.Shutdown(ctx), ErrShutdown)
}

// Shutdown whose context ends first cuts the connections left and still returns only after
// their OnClose: nothing of the server runs once it has returned.
func TestShutdownPastItsContextWaitsForOnClose(t *testing.T) {
	var done atomic.Bool
	opened := make(chan struct{}, 1)
	ts := start(t, HandlerFuncs{
		Open:  func(*Conn) { opened <- struct{}{} },
		Close: func(*Conn, error) { done.Store(true) },
	}, Options{})
	rc := rawDial(t, ts.url) // never answers the close frame
	_ = rc
	testutil.Recv(t, opened, "OnOpen")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, ts.Shutdown(ctx), context.Canceled)
	require.True(t, done.Load(), "Shutdown returned before OnClose ran")
}

// Close with a code no close frame can carry is refused and changes nothing; a reason too
// long for a close frame is cut at a character boundary and the close goes out.
func TestCloseUnsendable(t *testing.T) {
	res := make(chan []error, 1)
	long := strings.Repeat("é", 100) // 200 bytes
	ts := start(t, HandlerFuncs{Message: func(c *Conn, m Message) {
		var errs []error
		for _, code := range []websocket.StatusCode{999, 1004, 1005, 1006, 1015, 1016, 2999, 5000} {
			errs = append(errs, c.Close(code, "x"))
		}
		errs = append(errs, c.SendText("still open"))
		errs = append(errs, c.Close(4000, long))
		res <- errs
	}}, Options{})
	rc := rawDial(t, ts.url)
	rc.send(frameBytes(finBit|opText, []byte("go")))
	errs := testutil.Recv(t, res, "the handler's results")
	for _, err := range errs[:8] {
		require.ErrorIs(t, err, ErrInvalidCloseCode)
	}
	require.NoError(t, errs[8], "the connection is still open")
	require.NoError(t, errs[9])
	op, p := rc.read()
	require.Equal(t, byte(opText), op)
	require.Equal(t, "still open", string(p))
	code, reason := rc.expectClose()
	require.Equal(t, 4000, code)
	require.Equal(t, strings.Repeat("é", 61), reason) // 122 bytes: the 62nd would not fit
	require.True(t, utf8.ValidString(reason))
}

// An empty close frame (1005: what browsers' close() sends) is a normal close.
func TestEmptyCloseFrameIsNormal(t *testing.T) {
	cl := newCloses()
	ts := start(t, HandlerFuncs{Close: cl.record}, Options{})
	rc := rawDial(t, ts.url)
	rc.send(frameBytes(finBit|opCloseF, nil))
	code, _ := rc.expectClose()
	require.Equal(t, 1005, code, "an empty close frame is echoed empty")
	require.NoError(t, testutil.Recv(t, cl.errs, "OnClose"))
}

// HTTPServer closes a keep-alive connection that sits idle after a plain request, instead of
// keeping it (and its goroutine) forever.
func TestHTTPServerClosesIdleKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(HandlerFuncs{}, Options{})
		hs := s.HTTPServer("", nil)
		ln := newPipeListener()
		served := make(chan error, 1)
		go func() { served <- hs.Serve(ln) }()
		nc := ln.dial()
		defer nc.Close()
		br := bufio.NewReader(nc)
		_, err := io.WriteString(nc, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
		ended := make(chan error, 1)
		go func() { _, err := br.ReadByte(); ended <- err }()
		time.Sleep(2 * defaultHandshake)
		synctest.Wait()
		select {
		case err := <-ended:
			require.ErrorIs(t, err, io.EOF)
		default:
			nc.Close()
			<-ended
			t.Error("the idle keep-alive connection is still open")
		}
		require.NoError(t, hs.Close())
		require.ErrorIs(t, <-served, http.ErrServerClosed)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
}

// A block held while a reader was on its way into the queue is released, whatever the
// interleaving of hold (another reader) and releaseHeld (the inline reader, in the queue at
// last): hold reports true only for blocks that releaseHeld then runs, in order, and once
// releaseHeld has returned nothing is held and flagInline is clear.
func TestHoldAndReleaseHeldRace(t *testing.T) {
	c := fakeConn(New(HandlerFuncs{}, Options{}), 1)
	for range 2000 {
		c.setFlag(flagInline, true)
		var ran []int
		var taken [3]bool
		ready, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			close(ready)
			for i := range taken {
				taken[i] = c.hold(func() { ran = append(ran, i) })
			}
		}()
		<-ready
		c.releaseHeld()
		<-done // a hold after the release reports false: the caller queues its block itself
		var want []int
		for i, ok := range taken {
			if ok {
				want = append(want, i)
			}
		}
		require.Equal(t, want, ran)
		require.False(t, c.flag(flagInline|flagHeld))
		if m := c.more.Load(); m != nil {
			require.Empty(t, m.held)
		}
	}
}
