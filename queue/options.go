package queue

// An Option configures a queue at creation. Options compose: NewSerial("db", WithTarget(io),
// WithLimit(1024)).
type Option func(*settings)

type settings struct {
	label    string
	target   *Queue
	width    int
	qos      QoS
	qosSet   bool
	limit    int
	panics   func(recovered any, stack []byte)
	obs      Observer
	inactive bool
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

// WithLabel sets the queue's label; useful where the constructor takes none (NewGuarded).
func WithLabel(label string) Option {
	return func(s *settings) { s.label = label }
}

// Inactive creates the queue suspended until Activate is called, so it can be configured and
// filled before anything runs.
func Inactive() Option {
	return func(s *settings) { s.inactive = true }
}
