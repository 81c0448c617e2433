// Package queue brings Grand Central Dispatch's dispatch queues to Go.
//
// A Queue runs blocks (funcs). A serial queue runs them one at a time in the order they were
// submitted, so state that only its blocks touch needs no lock: the queue owns it (Guarded
// packages that pattern). A concurrent queue runs up to its width at once; a barrier block
// on it runs alone, between what came before and what comes after.
//
// Queues form a hierarchy: every queue has a target and its blocks run on it, up to one of
// the Global roots, whose workers are goroutines of a shared executor. Serial queues that
// target one serial queue take turns on it; a concurrent queue with WithWidth bounds
// everything below it. A queue is cheap: idle, it is a few words of memory and no goroutine,
// so a server can give each connection its own. Goroutines come from the executor while
// there is work (GOMAXPROCS workers running blocks, higher QoS first, plus the ones that make
// up for blocked workers: see below), and a busy queue runs its blocks in batches and then
// yields, so one flooded queue cannot starve the others. The drainer of a flooded serial
// queue (one that took 512 blocks or more at once) sleeps between batches until 512 more wait
// or 50 µs have passed, rather than meet the submitters on the queue's lock; a Sync caller
// wakes it at once, and asleep it counts as a blocked worker. A block that makes an idle queue
// runnable hands that queue to its own worker, which runs it once the block returns, as Go's
// scheduler does with runnext: no lock, no goroutine woken while another worker looks for
// work. It never passes higher-QoS work waiting in the roots, and passes work of its own class
// at most 16 times in a row (a chain of queues passing work on); a drain that yields goes to
// the back of its root. If the block goes on (it waits, say, for that very queue), a worker
// looking for work takes the queue over.
//
// Async submits and returns; Sync waits, running the block on the caller's goroutine as GCD
// does (never taking a worker). A Sync onto an idle serial queue that targets a root takes it
// with one atomic compare-and-swap and gives it back with another when nothing was queued
// meanwhile, without the queue's lock. An Async onto an idle serial queue (one without a limit,
// an observer, a panic handler or call sites) hands it its block with one compare-and-swap,
// without the lock and without allocating; onto a busy one it takes the lock once, and the
// drainer takes everything pending under one lock. A Sync that finds its queue held by
// another Sync caller that took it so, with nothing queued, spins briefly on that word (not
// with one P) and takes the queue as soon as it is given back; failing that, with nothing
// queued, it yields and looks again a few times before it parks; a Sync caller hands a
// serial queue straight to the Sync caller waiting next. A Sync never hangs waiting for its own
// caller. A Sync from a block that holds a slot of a concurrent queue, onto that queue or onto
// a queue under it, runs at once in the caller's slot, as GCD runs a nested dispatch_sync onto
// a concurrent queue: this is what makes WithWidth(1) queues, default-width queues at
// GOMAXPROCS=1 and a reader's Sync queued behind a writer's barrier work. A Sync that would
// wait for a queue the caller holds alone (its own serial queue, a serial queue up the chain,
// its barrier), or for a queue that needs the only slot the caller holds, panics instead
// (SyncContext returns ErrWouldDeadlock), naming the queues. DetectDeadlocks also catches
// cycles of Syncs across queues, through serial queues and width-1 concurrent ones.
//
// A queue made WithLimit holds back its producers while it is full: Async waits for room,
// TryAsync fails, and Submit (for code submitting on behalf of others: timers, event sources)
// waits but returns ErrClosed instead of panicking when the queue closes. A block whose own
// return is what would make room (it runs on the queue, or holds a serial queue the queue
// needs) is let in over the limit rather than waiting for itself.
//
// Blocking inside a block (network or disk I/O, a channel receive, time.Sleep) holds a
// worker for as long as it blocks, and the Global roots have only GOMAXPROCS workers: keep
// blocking calls out of blocks, or give them queues of their own that do not share a
// width-limited target with latency-sensitive work. The executor makes up for blocked
// workers in two cases only. While a worker waits in a Sync, another may start in its place.
// And when every worker has been stuck for 20 ms (no block started while items wait), the
// process used less CPU over that time than its running workers would if they computed, and
// no goroutine waits for a CPU (the Go scheduler's count), a monitor lends one more worker,
// then another 20 ms later if still so, up to 256 lent at once (ExecutorStats.Lent), retired
// when the roots run dry. A CPU-bound block, however long, or a machine short of CPU gets no
// extra worker: more goroutines would only take turns on the same CPUs.
//
// QoS and priority inversion: when workers are scarce, higher classes start first. Work of a
// higher class that waits behind a lower-class queue raises (overrides) that queue's class
// until the work is past, as GCD does: a Sync caller, an Async submitted by a block running
// at a higher class, and the drain of a higher-class queue that targets it. A goroutine
// outside the executor has no class of its own: its Asyncs raise nothing.
//
// Tests with testing/synctest: queues work inside a bubble. The executor keeps one pool of
// workers per bubble: a root's item is run by workers of the bubble of the goroutine that
// queued it (the one that submitted to an idle queue, or a worker that yields), so blocks may
// use the bubble's channels and fake clock; a stalled-worker monitor of the bubble runs on
// fake time; and when the bubble's work is done its workers and monitor exit at once, without
// time passing, so synctest.Test and synctest.Wait see no goroutine of the executor left (while a worker is
// blocked, the monitor ticks every 20 ms of fake time, so a block sleeping for fake hours
// costs the test real milliseconds). What
// the runtime does not allow, and queues cannot hide: a queue shared by a bubble and code
// outside it runs blocks submitted from one side on a worker of the other side while its
// drain is there, and a block touching a bubble's channels from outside is a fatal error. Give
// a bubble its own queues, made inside it. (The runtime offers no API to ask for a goroutine's
// bubble: the executor looks for it only when a goroutine that is not a worker queues work,
// using the bubble's clock, which has no monotonic reading, then the goroutine's traceback
// header.)
//
// Panics: a panic in an Async block crashes the program, as it would in a goroutine, unless
// the queue (or a queue it targets) has WithPanicHandler; then the handler gets it and the
// queue goes on. A panic in a Sync block reaches the Sync caller. A block that ends with
// runtime.Goexit (t.FailNow, require.* in a test) ends its worker goroutine, as Goexit says,
// and is otherwise treated like a handled panic: it counts as executed, its queue goes on,
// Close returns, the executor replaces the worker, and an Observer sees ErrGoexit as the
// block's panic value (the panic handler is not called: a Goexit is no panic).
//
// Tracing plugs in through Observer (the tracing package implements it); without one, a
// block costs one nil check for it.
//
// See ExampleQueue_Async, ExampleGuarded and examples/counter for the model in use.
package queue
