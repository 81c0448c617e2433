package wsserver

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Logging. A server writes few lines, all through Options.Logger: one per abnormal close
// (a connection that ended with an error: a protocol violation, 1007, 1009, a slow
// consumer, a ping or write timeout, a rate-limit close, a lost connection, a panic), one
// per refused Authenticate, and the Broker's failures. Faults caused by clients come in
// floods (a scanner, a broken client release), so the lines go through a token bucket;
// what it holds back is counted and reported by the next line that goes out, as a
// "suppressed" attribute, and in ServerStats.LogSuppressed.

const (
	defaultLogRate  = 10 // lines per second, on average
	defaultLogBurst = 20 // lines at once
)

// logLimiter is a token bucket shared by a server's lines.
type logLimiter struct {
	rate  float64 // tokens per second; <= 0: no limit
	burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed uint64 // held back since the last line out
	total      uint64 // held back ever, for Stats
}

func newLogLimiter(rate float64) *logLimiter {
	if rate == 0 {
		rate = defaultLogRate
	}
	burst := max(float64(defaultLogBurst), 2*rate)
	return &logLimiter{rate: rate, burst: burst, tokens: burst}
}

// allow takes a token at now. It returns whether a line may go out and, if so, how many
// were held back before it.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed uint64) {
	if l.rate < 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		l.total++
		return false, 0
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// held returns how many lines the limiter has held back in all.
func (l *logLimiter) held() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// logger returns Options.Logger, or slog.Default() as it is now.
func (s *Server) logger() *slog.Logger {
	if s.opts.Logger != nil {
		return s.opts.Logger
	}
	return slog.Default()
}

// log writes one rate-limited line.
func (s *Server) log(level slog.Level, msg string, attrs ...slog.Attr) {
	lg := s.logger()
	ctx := context.Background()
	if !lg.Enabled(ctx, level) {
		return
	}
	ok, suppressed := s.logLimit.allow(time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", suppressed))
	}
	lg.LogAttrs(ctx, level, msg, attrs...)
}

// closedBy says which side ended a connection, from the Observer's reason.
func closedBy(why string) string {
	switch why {
	case ReasonPeerClose, ReasonReadError:
		return "peer"
	case ReasonNormal:
		return "either"
	}
	return "server"
}

// logClose writes the line of an abnormal close (err not nil); it runs once per
// connection, where its close is final (retire). Closes the application asked for
// (Conn.Close, Shutdown) are no fault and write nothing. A close the peer caused (it went
// away, or closed with an odd code) is Info; one the server decided on a fault it found is
// Warn.
func (s *Server) logClose(c *Conn, err error, why string) {
	if err == nil || why == ReasonServerClose || why == ReasonShutdown {
		return
	}
	by := closedBy(why)
	level := slog.LevelWarn
	if by == "peer" {
		level = slog.LevelInfo
	}
	code, reason := websocket.CloseStatus(err), ""
	var ce *CloseError
	var wce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		reason = ce.Reason
	case errors.As(err, &wce):
		reason = wce.Reason
	}
	s.log(level, "wsserver: connection closed abnormally",
		slog.Uint64("conn", c.id),
		slog.String("remote", c.RemoteAddr()),
		slog.Int("code", int(code)),
		slog.String("reason", reason),
		slog.String("by", by),
		slog.String("cause", why),
		slog.String("err", err.Error()),
	)
}
