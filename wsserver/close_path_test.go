package wsserver

import (
	"sync"
	"testing"

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
