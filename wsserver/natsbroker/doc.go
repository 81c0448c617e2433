// Package natsbroker is a wsserver.Broker over NATS: several server processes ("nodes")
// behind a load balancer share their rooms, so that a broadcast on one node reaches the
// room's members on every node.
//
// Each room is a NATS subject, Prefix + "." + the room's name in base64url. A publication
// carries a small header before the payload: a version, the WebSocket message type, the
// origin node and the room. A node subscribes to a room's subject while it has members in it
// (wsserver's rooms do that), and NATS keeps the messages of one publisher on one subject in
// order, so every node sees a room's broadcasts from a given node in the order they were
// made. The connection is made with NoEcho, and the origin in the header is checked too, so
// a node never gets its own publications back.
//
// NATS core is at-most-once. When the connection to NATS is lost, rooms keep serving the
// members of their own node, the broker reconnects (nats.go's reconnect, forever by
// default) and resubscribes, and what is published meanwhile is refused at once (no
// reconnect buffer) and counted as dropped, in Stats and in the server's
// ServerStats.BrokerDropped. Messages already written to the socket when it broke may be
// lost without being counted: NATS core has no acknowledgement.
package natsbroker
