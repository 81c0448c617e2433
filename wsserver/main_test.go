package wsserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait is how long any test waits for an event before failing loudly.
const wait = 10 * time.Second

// testServer is a Server mounted on a loopback httptest server.
type testServer struct {
	*Server
	http *httptest.Server
	url  string
}

func start(t *testing.T, h Handler, opts Options) *testServer {
	t.Helper()
	s := New(h, opts)
	hs := httptest.NewUnstartedServer(s)
	hs.Config.ReadHeaderTimeout = s.opts.HandshakeTimeout
	hs.Start()
	ts := &testServer{Server: s, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, ErrShutdown) { // the test may have shut it down
			require.NoError(t, err)
		}
		hs.Close()
	})
	return ts
}

func dial(t testing.TB, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, nil)
	require.NoError(t, err)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return c
}

func read(t testing.TB, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, b, err := c.Read(ctx)
	require.NoError(t, err)
	return typ, string(b)
}

func write(t testing.TB, c *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(s)))
}

// readUntilClosed reads until the connection ends and returns the close code the client saw.
func readUntilClosed(t testing.TB, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			require.NoError(t, ctx.Err(), "the server did not close the connection in time")
			return websocket.CloseStatus(err)
		}
	}
}

// closes records OnClose calls: how many per connection, and the errors.
type closes struct {
	mu    sync.Mutex
	count map[uint64]int
	errs  chan error
}

func newCloses() *closes {
	return &closes{count: map[uint64]int{}, errs: make(chan error, 4096)}
}

func (cl *closes) record(c *Conn, err error) {
	cl.mu.Lock()
	cl.count[c.ID()]++
	cl.mu.Unlock()
	cl.errs <- err
}

func (cl *closes) each(t *testing.T) {
	t.Helper()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for id, n := range cl.count {
		require.Equal(t, 1, n, "OnClose ran %d times for connection %d", n, id)
	}
}

var _ http.Handler = (*Server)(nil)
