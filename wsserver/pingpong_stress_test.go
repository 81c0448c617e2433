package wsserver

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// Many connections each answering one message at a time (a message, its echo, the next):
// the readiness reader lets the connection go for every inline handler and takes it back
// after; a wake-up lost on the way would leave a message unread until the next one came,
// which never comes here: the read times out.
func TestReadinessOneMessageAtATimeLosesNoWakeUp(t *testing.T) {
	ts := start(t, echo(), Options{})
	const conns, rounds = 50, 200
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		c := dial(t, ts.url)
		wg.Go(func() {
			defer c.CloseNow()
			for r := range rounds {
				msg := strconv.Itoa(i) + "/" + strconv.Itoa(r)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := c.Write(ctx, websocket.MessageText, []byte(msg))
				if err == nil {
					var b []byte
					_, b, err = c.Read(ctx)
					if err == nil && string(b) != msg {
						err = context.Canceled
					}
				}
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
