// Package wsserver is a WebSocket server whose connections run on dispatch queues.
//
// Each connection gets its own serial queue: its callbacks (OnOpen, OnMessage, OnClose) run
// one at a time, in the order the events happened, so state that belongs to one connection
// needs no lock. Every connection queue targets one shared concurrent queue, "ws.handlers",
// of width GOMAXPROCS: callbacks of different connections run in parallel on every core,
// and never more at once than there are cores.
//
// A message's way through the server:
//
//	epoll poller (one per core) sees the socket readable
//	  -> the connection's reader (a goroutine while there is something to read)
//	  -> the connection's serial queue
//	  -> OnMessage on a worker of the shared handler queue
//	  -> Conn.Send / Room.Broadcast append to each recipient's bounded outbound buffer
//	  -> that connection's writer goroutine, started only while there is something to write
//	  -> the network, one system call per burst, bounded by WriteTimeout
//
// Sending never blocks: a slow client fills only its own buffer, and then the SlowConsumer
// policy closes it (CloseSlow, 1008), refuses the new message (DropNewest), discards the
// oldest (DropOldest), or keeps the latest value per key (Conflate, with Conn.SendKeyed and
// Room.BroadcastKeyed). Before that, Options.OnSlow tells the application that a client
// turned slow (its buffer reached SlowMark; Conn.Outbound reads the level) and when it has
// caught up, so it can be demoted rather than lost. Every message dropped is counted in
// Stats and told to the Observer; a BroadcastObserver also gets each Room broadcast's
// outcome member by member. Reading pauses when a connection's
// handler falls MaxPending messages behind, so a flood turns into TCP backpressure instead
// of memory.
//
// Two transports carry the reading (Options.Transport). The readiness transport, the
// default on Linux for plain sockets, registers each socket once, edge-triggered, with an
// epoll poller: an idle connection holds no goroutine, no read buffer and no
// coder/websocket Conn, only its structs (about 1.2 KB; listed in BENCHMARKS.md): the reader
// drops coder's Conn (and the buffers it reads and writes through) when it lets the
// connection go, and it is made again, with coder's own Accept on a synthetic request,
// when a frame needs it (a close frame, a fragmented or large message, the close
// handshake: pings and pongs are taken past it, as whole small messages are), and kept
// while the peer's messages keep needing it. When bytes
// arrive, the poller's goroutine runs the readers of the batch itself (no hand-off per
// wake-up), and one of a few runner goroutines of a run list runs what it passes on, which
// reads the messages with coder/websocket, which still parses the frames and answers close
// frames (the commonest message, a whole unfragmented text or binary frame already in the
// read buffer, and whole pings and pongs, are taken from it directly by the frame guard,
// which checks every frame anyway: one parse, one unmasking copy); at a message boundary with the socket empty
// it lets the connection go at once (no lingering for a busy peer's next message: measured,
// it cost more than the wake-ups it saved), and after a short read that brought one message
// it takes the socket for empty without a second read(2) (bytes that come later come with
// an edge; a hang-up that came with the message is flagged by the poller). A partially received frame keeps its reader waiting, never a
// handler worker nor another connection: a runner about to wait (for the rest of a frame,
// or in a handler) stops counting as busy first, and when connections wait with no runner
// busy, another runner is woken or started; a poller's goroutine about to wait for the rest
// of a frame hands its role to a new goroutine first, and one whose handler runs on for a
// millisecond or two is relieved the same way by a watchdog, the rest of its batch going to
// the run list. When no message of the connection's is
// waiting or running and nothing more is buffered, the reader runs OnMessage itself,
// through the connection's queue (Sync: same order, same exclusion, same HandlerWidth),
// instead of waking a worker for it; it hands the connection back to its poller
// meanwhile, so whatever arrives then (even the message a handler waits for, or the
// close) is read by another reader. The goroutine
// transport (TLS, other platforms, or asked for) keeps a reader goroutine blocked in Read
// for the connection's whole life. Both keep every contract below; CI runs the tests under
// both (WSSERVER_TRANSPORT=goroutine selects the second for TransportAuto).
//
// Below coder/websocket, a frame guard checks every frame the peer sends as it arrives
// (RFC 6455 sections 5-7): a bad frame (reserved bits or opcodes, an unmasked, fragmented or
// oversized control frame, a continuation with nothing to continue, a close frame with a
// code no peer may send) is answered with 1002, invalid UTF-8 in a text message or a close
// reason with 1007, at the first byte that cannot be valid. The messages read before it are
// still handled and what their handlers send goes out before the close frame; the input is
// then drained up to the peer's close, so that the socket never closes with unread data
// (a reset could cost the peer what was written last). A failure inside a frame's payload
// also shuts the sending side after the close frame: a peer that fails fast abandons the
// frame, and its close frame, sent where the payload would go on, cannot be told apart.
//
// Options is a struct whose zero value is safe, as coder/websocket's AcceptOptions and
// net/http's Server are: a server states only what it changes, and every field documents
// its default. Tracing plugs in through Observer (the tracing package implements it).
//
// Faults are logged, not hidden: every abnormal close writes one line to Options.Logger
// (slog.Default() unless set) with the connection id, remote address, close code, reason
// and which side closed, as does every request Authenticate refused; a token bucket
// (Options.LogRate) keeps a flood of bad clients from flooding the log and counts what it
// held back.
//
// Rooms span several server processes through a Broker (Options.Broker): each node's room
// subscribes while it has members and publishes every broadcast; the natsbroker package
// carries them over NATS, and LocalBus links the servers of one process (ExampleBroker).
// A Broker that is also a ContextBroker (natsbroker's) carries the publisher's context with
// each message when the Server has an Observer, so that a message's trace goes on on every
// node (a RemoteObserver, the tracing package's, makes the delivery's span).
//
// Start with ExampleServer; examples/echo is the smallest complete server and
// examples/chat the full demo.
package wsserver
