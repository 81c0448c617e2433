package wsserver

import (
	"slices"
	"sync/atomic"

	"github.com/dispatchkit/dispatchkit/queue"
)

// counters are the server's running totals.
type counters struct {
	accepted, rejected    atomic.Uint64
	msgsIn, msgsOut       atomic.Uint64
	bytesIn, bytesOut     atomic.Uint64
	dropped, slowCloses   atomic.Uint64
	conflated, turnedSlow atomic.Uint64

	brokerPublished, brokerReceived atomic.Uint64
	brokerDropped, brokerErrors     atomic.Uint64
}

// ServerStats is a snapshot of a server's state and totals.
type ServerStats struct {
	Connections        int    // open now: a connection leaves the count just after its OnClose returns
	Rooms              int    // rooms alive: with members, or used since they last had none
	Accepted           uint64 // upgrades completed
	Rejected           uint64 // requests refused before or during the upgrade
	MessagesIn         uint64 // messages received and handed to a handler
	MessagesOut        uint64 // messages written to the network
	BytesIn            uint64 // payload bytes of MessagesIn
	BytesOut           uint64 // payload bytes of MessagesOut
	Dropped            uint64 // outbound messages refused or discarded (full buffer, closed, conflated, failed write)
	Conflated          uint64 // of Dropped: queued messages replaced by a newer one with their key
	SlowConsumerCloses uint64 // connections closed by the CloseSlow policy
	TurnedSlow         uint64 // times a connection's outbound buffer reached SlowMark
	Slow               int    // connections slow now (see Conn.Slow)
	Pending            int    // received messages waiting for their handler, all connections
	Queued             int    // outbound messages waiting for their writer, all connections
	QueuedBytes        int    // their payload bytes
	Handlers           queue.Stats
	LogSuppressed      uint64 // log lines held back by Options.LogRate

	// With a Broker (Options.Broker):
	BrokerPublished uint64 // room broadcasts the Broker took, for the other nodes
	BrokerReceived  uint64 // room messages from other nodes served to this node's members
	BrokerDropped   uint64 // room broadcasts the Broker refused: the other nodes missed them
	BrokerErrors    uint64 // failed Subscribe and Unsubscribe calls
	BrokerErr       error  // the Broker's Err now: nil while it reaches the other nodes
}

// Stats returns a snapshot of the server's counters and queue depths. It visits every
// connection, so it costs O(connections).
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		Accepted:           s.stats.accepted.Load(),
		Rejected:           s.stats.rejected.Load(),
		MessagesIn:         s.stats.msgsIn.Load(),
		MessagesOut:        s.stats.msgsOut.Load(),
		BytesIn:            s.stats.bytesIn.Load(),
		BytesOut:           s.stats.bytesOut.Load(),
		Dropped:            s.stats.dropped.Load(),
		SlowConsumerCloses: s.stats.slowCloses.Load(),
		Conflated:          s.stats.conflated.Load(),
		TurnedSlow:         s.stats.turnedSlow.Load(),
		Handlers:           s.handlers.Stats(),
		LogSuppressed:      s.logLimit.held(),
		Rooms:              int(s.roomCount.Load()),
		BrokerPublished:    s.stats.brokerPublished.Load(),
		BrokerReceived:     s.stats.brokerReceived.Load(),
		BrokerDropped:      s.stats.brokerDropped.Load(),
		BrokerErrors:       s.stats.brokerErrors.Load(),
	}
	if s.broker != nil {
		st.BrokerErr = s.broker.Err()
	}
	s.mu.Lock()
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	st.Connections = len(conns)
	for _, c := range conns {
		st.Pending += int(c.backlog.Load())
		c.mu.Lock()
		st.Queued += len(c.out)
		st.QueuedBytes += c.outBytes
		if c.slow {
			st.Slow++
		}
		c.mu.Unlock()
	}
	return st
}
