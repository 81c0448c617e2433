package wsserver

import (
	"errors"
	"fmt"

	"github.com/coder/websocket"
)

var (
	// ErrClosed is returned by Send on a connection that is closed or closing.
	ErrClosed = errors.New("wsserver: connection closed")
	// ErrSlowConsumer is returned by Send when the outbound buffer is full; with CloseSlow
	// the connection is also closed with 1008, and OnClose's error wraps it.
	ErrSlowConsumer = errors.New("wsserver: slow consumer: outbound buffer full")
	// ErrForbidden, wrapped by an Authenticate error, answers 403 instead of 401.
	ErrForbidden = errors.New("wsserver: forbidden")
	// ErrPingTimeout is wrapped by OnClose's error when the peer did not answer a ping.
	ErrPingTimeout = errors.New("wsserver: no pong within the pong timeout")
	// ErrIdleTimeout is wrapped by OnClose's error when the peer sent nothing for IdleTimeout.
	ErrIdleTimeout = errors.New("wsserver: idle timeout")
	// ErrRateLimited is wrapped by OnClose's error when the peer exceeded RateLimit.
	ErrRateLimited = errors.New("wsserver: message rate limit exceeded")
	// ErrInvalidUTF8 is wrapped by OnClose's error when a text message (or a close frame's
	// reason) was not valid UTF-8; the connection was closed with 1007.
	ErrInvalidUTF8 = errors.New("wsserver: text message is not valid UTF-8")
	// ErrMessageTooBig is wrapped by OnClose's error when a message exceeded ReadLimit.
	ErrMessageTooBig = errors.New("wsserver: message exceeds the read limit")
	// ErrHandlerPanic is wrapped by OnClose's error when a callback panicked.
	ErrHandlerPanic = errors.New("wsserver: handler panicked")
	// ErrShutdown is wrapped by OnClose's error when Shutdown closed the connection, and
	// returned by Shutdown when called twice.
	ErrShutdown = errors.New("wsserver: server shut down")
	// ErrWriteFailed is wrapped by OnClose's error when a write failed or timed out.
	ErrWriteFailed = errors.New("wsserver: write failed")
	// ErrProtocol is wrapped by OnClose's error when the peer broke the WebSocket protocol
	// (a reserved bit or opcode, an unmasked or malformed frame, a bad close frame); the
	// connection was closed with 1002.
	ErrProtocol = errors.New("wsserver: protocol error")
	// ErrInvalidCloseCode is returned by Conn.Close for a code that cannot be sent in a close
	// frame (sendable: 1000-1003, 1007-1014 and 3000-4999); nothing is sent then.
	ErrInvalidCloseCode = errors.New("wsserver: close code cannot be sent")
	// ErrConnectionLost is wrapped by OnClose's error when the connection ended without a
	// close frame (reset, EOF, read error); its close code is 1006.
	ErrConnectionLost = errors.New("wsserver: connection lost")
)

// CloseError is the error OnClose gets when a connection did not end normally. It carries
// the close code (websocket.CloseStatus and errors.As with websocket.CloseError see it) and
// the cause (errors.Is sees the sentinel, such as ErrSlowConsumer).
type CloseError struct {
	Code   websocket.StatusCode
	Reason string // the close frame's reason text
	Cause  error  // a sentinel of this package, or the underlying error
}

// Error describes the close.
func (e *CloseError) Error() string {
	return fmt.Sprintf("wsserver: connection closed with %d %q: %v", int(e.Code), e.Reason, e.Cause)
}

// Unwrap exposes both the websocket.CloseError and the cause.
func (e *CloseError) Unwrap() []error {
	return []error{websocket.CloseError{Code: e.Code, Reason: e.Reason}, e.Cause}
}
