package main

import (
	"log"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The chat example's constants, except the message size: the load generator sends up to
// 32 KiB, as wsserver and coder/websocket accept by default.
const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second
	pingPeriod     = pongWait * 9 / 10
	maxMessageSize = 32 << 10
	sendBuffer     = 256
)

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}

// message is one WebSocket message with its type, so that echo keeps text as text.
type message struct {
	typ  int
	data []byte
}

// hub owns the set of clients: registration, removal and broadcast all go through its
// goroutine, so the set needs no lock.
type hub struct {
	clients    map[*client]bool
	broadcast  chan message
	register   chan *client
	unregister chan *client
	done       chan struct{}
	stopOnce   sync.Once
	writers    sync.WaitGroup // writer goroutines, to wait for them on stop
}

func newHub() *hub {
	return &hub{
		clients:    make(map[*client]bool),
		broadcast:  make(chan message),
		register:   make(chan *client),
		unregister: make(chan *client),
		done:       make(chan struct{}),
	}
}

// stop ends run, which closes every client's send channel; their writers then close the
// sockets, and their readers end on the closed sockets.
func (h *hub) stop() { h.stopOnce.Do(func() { close(h.done) }) }

func (h *hub) run() {
	defer h.writers.Wait()
	for {
		select {
		case c := <-h.register:
			// Counted here, on the goroutine that waits, so Add never races with Wait.
			h.writers.Add(1)
			h.clients[c] = true
		case c := <-h.unregister:
			if h.clients[c] {
				delete(h.clients, c)
				close(c.send)
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- m:
				default: // a client that cannot keep up is dropped, as in the chat example
					close(c.send)
					delete(h.clients, c)
				}
			}
		case <-h.done:
			for c := range h.clients {
				close(c.send)
				delete(h.clients, c)
			}
			return
		}
	}
}

// client is one connection: its reader goroutine hands messages to the hub or to its own
// send channel, and its writer goroutine is the only one that writes to the socket.
type client struct {
	hub  *hub
	conn *websocket.Conn
	send chan message
}

// readPump reads until the connection fails, then unregisters the client.
func (c *client) readPump() {
	defer func() {
		select {
		case c.hub.unregister <- c:
		case <-c.hub.done:
		}
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		m := message{typ: typ, data: data}
		if len(data) > 0 && data[0] == 'B' {
			select {
			case c.hub.broadcast <- m:
			case <-c.hub.done:
				return
			}
			continue
		}
		// Echo through the writer, as the chat example does for everything it sends. A full
		// buffer means the client does not read its echoes: drop it.
		select {
		case c.send <- m:
		default:
			return
		}
	}
}

// writePump writes what arrives on send and pings on a ticker; a closed send channel means
// the hub dropped the client.
func (c *client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
		c.hub.writers.Done()
	}()
	for {
		select {
		case m, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
				return
			}
			if err := c.conn.WriteMessage(m.typ, m.data); err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// serveWS upgrades the request and starts the client's two goroutines.
func serveWS(h *hub, w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		log.Println("gorilla: upgrade:", err)
		return
	}
	c := &client{hub: h, conn: conn, send: make(chan message, sendBuffer)}
	select {
	case h.register <- c:
	case <-h.done:
		conn.Close()
		return
	}
	go c.writePump()
	go c.readPump()
}
