//go:build !linux

package wsserver

import (
	"bufio"
	"errors"
	"net"
)

// pollConn exists only on Linux; elsewhere every connection has a reader goroutine.
type pollConn struct {
	net.Conn
	br *bufio.Reader
}

func newPollConn(net.Conn, []byte, *batchWriter, *frameGuard) *pollConn { return nil }

func (pc *pollConn) register(*Conn) error { return errors.ErrUnsupported }
func (pc *pollConn) run()                 {}
func (pc *pollConn) resume(int32)         {}
func (pc *pollConn) setBlocking()         {}
func (pc *pollConn) blockBegin() bool     { return false }
func (pc *pollConn) blockEnd()            {}

func registered() int { return 0 }
