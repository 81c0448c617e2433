package wsserver

import (
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// A handler that ends its goroutine with runtime.Goexit (a test's require in a handler does)
// loses nothing but its own message: the connection's next messages are still read and
// handled, under either transport (the readiness transport may run a handler on the reader's
// own goroutine).
func TestHandlerGoexitKeepsTheConnectionServed(t *testing.T) {
	exiting := make(chan struct{}, 1)
	h := HandlerFuncs{Message: func(c *Conn, m Message) {
		if string(m.Data) == "goexit" {
			exiting <- struct{}{}
			runtime.Goexit()
		}
		_ = c.Send(m)
	}}
	ts := start(t, h, Options{})
	c := dial(t, ts.url)
	defer c.CloseNow()
	for i := range 20 {
		// One at a time, so that the readiness reader finds the stream quiet and runs the
		// handler itself.
		write(t, c, "goexit")
		testutil.Recv(t, exiting, "the handler's Goexit")
		write(t, c, "after "+strconv.Itoa(i))
		_, s := read(t, c)
		require.Equal(t, "after "+strconv.Itoa(i), s)
	}
}
