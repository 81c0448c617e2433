package wsserver

import (
	"os"
)

// Transport says how a connection waits for its next message.
type Transport uint8

const (
	// TransportAuto uses the readiness transport where it applies (Linux, a plain TCP or
	// Unix socket: not TLS, whose buffered plaintext a readiness API cannot see) and a
	// reader goroutine elsewhere. The environment variable WSSERVER_TRANSPORT=goroutine
	// turns it into TransportGoroutine for the whole process (CI runs the tests both ways).
	// The default.
	TransportAuto Transport = iota
	// TransportGoroutine gives every connection a reader goroutine blocked in Read for its
	// whole life: about 4 KB of stack per idle connection, and no system call beyond the
	// read itself per message.
	TransportGoroutine
	// TransportReadiness is TransportAuto regardless of WSSERVER_TRANSPORT: the
	// readiness transport wherever it applies.
	TransportReadiness
)

// String names the transport.
func (t Transport) String() string {
	switch t {
	case TransportGoroutine:
		return "goroutine"
	case TransportReadiness:
		return "readiness"
	}
	return "auto"
}

// transportEnv is WSSERVER_TRANSPORT, read once.
var transportEnv = os.Getenv("WSSERVER_TRANSPORT")

// resolve returns the transport TransportAuto stands for in this process.
func (t Transport) resolve() Transport {
	if t == TransportAuto {
		if transportEnv == "goroutine" {
			return TransportGoroutine
		}
		return TransportReadiness
	}
	return t
}
