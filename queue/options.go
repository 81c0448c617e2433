package queue

// An Option configures a queue at creation. Options compose: NewSerial("db", WithTarget(io),
// WithLimit(1024)).
type Option func(*settings)

type settings struct {
	label    string
	key      *string
	target   *Queue
	width    int
	qos      QoS
	qosSet   bool
	limit    int
	panics   func(recovered any, stack []byte)
	obs      Observer
	inactive bool
	debug    debugFlags
	debugSet debugFlags
}

type debugFlags uint8

const (
	noProfileLabels debugFlags = 1 << iota
	recordCallSites
)

// WithProfileLabels(false) stops the queue from running its blocks under a runtime/pprof
// label naming it (on by default, so that a CPU profile says which queue burned the time; it
// costs a label switch per batch of blocks, and two per Sync: about half of an uncontended
// Sync, so a queue used as a lock, Synced from a hot path, runs about twice as fast without
// them). Queues that target this one inherit the setting.
func WithProfileLabels(on bool) Option {
	return func(s *settings) {
		s.debugSet |= noProfileLabels
		if on {
			s.debug &^= noProfileLabels
		} else {
			s.debug |= noProfileLabels
		}
	}
}

// WithCallSites records where each block was submitted (off by default: it costs a
// runtime.Caller per block). The site appears in BlockInfo.Site for observers and the
// inspector, and in the message a panic handler's stack starts with. Queues that target this
// one inherit the setting.
func WithCallSites(on bool) Option {
	return func(s *settings) {
		s.debugSet |= recordCallSites
		if on {
			s.debug |= recordCallSites
		} else {
			s.debug &^= recordCallSites
		}
	}
}

// WithTarget runs the queue's blocks on t, GCD's target queue: serial queues that target one
// serial queue run one at a time with each other and with it, and a concurrent target bounds
// the parallelism of everything under it. Without it a queue targets Global of its QoS.
func WithTarget(t *Queue) Option {
	return func(s *settings) { s.target = t }
}

// WithWidth lets a concurrent queue run at most n blocks at once (n >= 1). The parallelism a
// queue gets is the smallest width along its target chain. It has no effect on serial queues.
func WithWidth(n int) Option {
	return func(s *settings) { s.width = n }
}

// WithQoS sets the queue's quality-of-service class (default Default). A queue with no target
// runs on Global(q).
func WithQoS(q QoS) Option {
	return func(s *settings) { s.qos, s.qosSet = q, true }
}

// WithLimit bounds the queue to n pending (accepted, not yet started) blocks: Async waits for
// room, TryAsync fails with ErrFull. Sync is not counted. n <= 0 means no limit.
//
// A block that the queue could make room for only after it returns is let in over the limit
// instead of waiting for itself: a block running on the queue (or on a queue that targets
// it), or one holding what the queue's blocks need to start (a serial queue up its target
// chain, or the only slot of a concurrent one). The limit holds back the queue's producers,
// not its own blocks; TryAsync still fails with ErrFull.
func WithLimit(n int) Option {
	return func(s *settings) { s.limit = n }
}

// WithPanicHandler makes a panic in an Async block call h (with the recovered value and the
// stack) instead of crashing the program; the queue then goes on with its next block. Queues
// that target this one inherit h unless they set their own.
func WithPanicHandler(h func(recovered any, stack []byte)) Option {
	return func(s *settings) { s.panics = h }
}

// WithObserver reports the queue's blocks to o (see Observer). Queues that target this one
// inherit o unless they set their own.
func WithObserver(o Observer) Option {
	return func(s *settings) { s.obs = o }
}

// WithKey gives the queue an identity beyond its label: the label names a role shared by
// many queues ("ws.conn", "symbol"), the key the one instance ("17", "AAPL"). An Observer and
// Stats report it, so spans and the inspector can tell which of a label's queues is busy.
// Queues that target this one do not inherit it. Empty means none.
func WithKey(key string) Option {
	return func(s *settings) {
		s.key = nil
		if key != "" {
			s.key = &key
		}
	}
}

// WithLabel sets the queue's label; useful where the constructor takes none (NewGuarded).
func WithLabel(label string) Option {
	return func(s *settings) { s.label = label }
}

// Inactive creates the queue suspended until Activate is called, so it can be configured and
// filled before anything runs.
func Inactive() Option {
	return func(s *settings) { s.inactive = true }
}
