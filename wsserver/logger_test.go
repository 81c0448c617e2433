package wsserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/dispatchkit/dispatchkit/internal/testutil"
)

// logRecords is a slog.Handler that hands every record to a channel.
type logRecords chan slog.Record

func (l logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l logRecords) Handle(_ context.Context, r slog.Record) error {
	l <- r.Clone()
	return nil
}
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logRecords) WithGroup(string) slog.Handler      { return l }

// attrs returns a record's attributes by key.
func attrs(r slog.Record) map[string]slog.Value {
	m := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
	return m
}

// An abnormal close is one log line with the connection's id, its address, the code and
// reason, and which side closed; a normal close writes none.
func TestAbnormalCloseIsLogged(t *testing.T) {
	logs := make(logRecords, 16)
	opened := make(chan *Conn, 2)
	closed := make(chan error, 2)
	ts := start(t, HandlerFuncs{
		Open:  func(c *Conn) { opened <- c },
		Close: func(_ *Conn, err error) { closed <- err },
	}, Options{Logger: slog.New(logs)})

	good := dial(t, ts.url)
	testutil.Recv(t, opened, "OnOpen")
	require.NoError(t, good.Close(websocket.StatusNormalClosure, ""))
	require.NoError(t, testutil.Recv(t, closed, "OnClose of the normal close"))
	// A close the application asks for is no fault either.
	app := dial(t, ts.url)
	defer app.CloseNow()
	require.NoError(t, testutil.Recv(t, opened, "OnOpen").Close(4000, "moved"))
	require.Equal(t, websocket.StatusCode(4000), readUntilClosed(t, app))
	require.Equal(t, websocket.StatusCode(4000), websocket.CloseStatus(testutil.Recv(t, closed, "OnClose of the app's close")))

	bad := dial(t, ts.url)
	defer bad.CloseNow()
	c := testutil.Recv(t, opened, "OnOpen")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, bad.Write(ctx, websocket.MessageText, []byte{0xff, 0xfe}))
	require.Equal(t, websocket.StatusInvalidFramePayloadData, readUntilClosed(t, bad))
	require.ErrorIs(t, testutil.Recv(t, closed, "OnClose of the bad client"), ErrInvalidUTF8)

	r := testutil.Recv(t, logs, "the log line of the abnormal close")
	require.Equal(t, slog.LevelWarn, r.Level)
	a := attrs(r)
	require.Equal(t, c.ID(), a["conn"].Uint64())
	require.Equal(t, c.RemoteAddr(), a["remote"].String())
	require.NotEmpty(t, a["remote"].String())
	require.Equal(t, int64(websocket.StatusInvalidFramePayloadData), a["code"].Int64())
	require.Equal(t, "invalid UTF-8", a["reason"].String())
	require.Equal(t, "server", a["by"].String())
	require.Equal(t, ReasonInvalidUTF8, a["cause"].String())
	shut := dial(t, ts.url)
	defer shut.CloseNow()
	testutil.Recv(t, opened, "OnOpen")
	ctx, cancel = context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, ts.Shutdown(ctx)) // retire has logged (or not) when it returns
	require.ErrorIs(t, testutil.Recv(t, closed, "OnClose of the shutdown"), ErrShutdown)
	select {
	case r := <-logs:
		t.Fatalf("a second line (normal, application and shutdown closes write none): %v", attrs(r))
	default:
	}
}

// A flood of bad clients writes at most the limiter's burst (and what it refills), and
// every close is either logged or counted as suppressed; the next line out says how many
// were held back.
func TestAbnormalCloseLogIsRateLimited(t *testing.T) {
	const clients = 40
	logs := make(logRecords, clients)
	closed := make(chan error, clients)
	ts := start(t, HandlerFuncs{Close: func(_ *Conn, err error) { closed <- err }},
		Options{Logger: slog.New(logs), LogRate: 0.001}) // a burst of 20, then next to nothing
	for range clients {
		c := dial(t, ts.url)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		require.NoError(t, c.Write(ctx, websocket.MessageText, []byte{0xc0}))
		cancel()
		readUntilClosed(t, c)
		c.CloseNow()
		require.ErrorIs(t, testutil.Recv(t, closed, "OnClose"), ErrInvalidUTF8)
	}
	// retire logs before the connection leaves the registry: Shutdown returning means
	// every line is written.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, ts.Shutdown(ctx))
	lines := len(logs)
	require.Equal(t, defaultLogBurst, lines)
	require.Equal(t, uint64(clients-lines), ts.Stats().LogSuppressed)
}

func TestLogLimiter(t *testing.T) {
	l := newLogLimiter(2) // burst 20
	now := time.Unix(1000, 0)
	for i := range 20 {
		ok, n := l.allow(now)
		require.True(t, ok, "line %d of the burst", i)
		require.Zero(t, n)
	}
	for range 5 {
		ok, _ := l.allow(now)
		require.False(t, ok)
	}
	now = now.Add(time.Second) // two tokens
	ok, n := l.allow(now)
	require.True(t, ok)
	require.Equal(t, uint64(5), n, "the first line after a flood reports it")
	ok, n = l.allow(now)
	require.True(t, ok)
	require.Zero(t, n)
	ok, _ = l.allow(now)
	require.False(t, ok)
	require.Equal(t, uint64(6), l.held())

	unlimited := newLogLimiter(-1)
	for range 1000 {
		ok, _ := unlimited.allow(now)
		require.True(t, ok)
	}
}

// Authenticate's error reaches the log (the client gets only the status).
func TestAuthenticateErrorIsLogged(t *testing.T) {
	logs := make(logRecords, 4)
	ts := start(t, HandlerFuncs{}, Options{
		Logger: slog.New(logs),
		Authenticate: func(r *http.Request) (any, error) {
			return nil, errors.New("token expired at 12:00")
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, ts.url, nil)
	require.Error(t, err)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	r := testutil.Recv(t, logs, "the refusal's log line")
	a := attrs(r)
	require.Equal(t, "token expired at 12:00", a["err"].String())
	require.Equal(t, int64(http.StatusUnauthorized), a["status"].Int64())
	require.NotEmpty(t, a["remote"].String())
}
