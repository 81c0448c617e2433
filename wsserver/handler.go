package wsserver

import "github.com/coder/websocket"

// Message is one WebSocket data message.
type Message struct {
	Type websocket.MessageType // websocket.MessageText or websocket.MessageBinary
	// Data is the payload. A received message's Data belongs to the handler: it is a fresh
	// slice of exactly the message's length (the reading itself goes through pooled
	// buffers), so OnMessage may keep it, change it or Send it after it returns. A sent
	// message's Data must not be modified after Send or Broadcast: it is written later, and a
	// broadcast shares it among every recipient.
	Data []byte
}

// Text returns a text message holding s.
func Text(s string) Message { return Message{Type: websocket.MessageText, Data: []byte(s)} }

// Binary returns a binary message holding b.
func Binary(b []byte) Message { return Message{Type: websocket.MessageBinary, Data: b} }

// A Handler receives a connection's events. All three methods run on the connection's serial
// queue (Conn.Queue), one at a time and in the order the events happened, so state that only
// one connection's callbacks touch needs no lock. OnClose runs exactly once for every
// OnOpen, after the last OnMessage.
//
// The callbacks of different connections run in parallel on the shared handler queue, up to
// Options.HandlerWidth at once: a callback that blocks (network, disk, a long computation)
// holds one of those slots, so hand slow work to a queue of its own.
type Handler interface {
	// OnOpen is called once the connection is upgraded, before any OnMessage.
	OnOpen(c *Conn)
	// OnMessage is called for every message received, in order.
	OnMessage(c *Conn, m Message)
	// OnClose is called once when the connection has ended. err is nil for a normal closure
	// (1000 from either side, or 1001 from the peer); otherwise websocket.CloseStatus(err)
	// gives the code and errors.Is the cause (ErrSlowConsumer, ErrPingTimeout, ...).
	OnClose(c *Conn, err error)
}

// HandlerFuncs adapts plain functions to Handler; nil fields do nothing.
type HandlerFuncs struct {
	Open    func(c *Conn)
	Message func(c *Conn, m Message)
	Close   func(c *Conn, err error)
}

// OnOpen calls h.Open if set.
func (h HandlerFuncs) OnOpen(c *Conn) {
	if h.Open != nil {
		h.Open(c)
	}
}

// OnMessage calls h.Message if set.
func (h HandlerFuncs) OnMessage(c *Conn, m Message) {
	if h.Message != nil {
		h.Message(c, m)
	}
}

// OnClose calls h.Close if set.
func (h HandlerFuncs) OnClose(c *Conn, err error) {
	if h.Close != nil {
		h.Close(c, err)
	}
}
