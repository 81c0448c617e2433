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
// there is work (at most GOMAXPROCS running blocks, higher QoS first), and a busy queue runs
// its blocks in batches and then yields, so one flooded queue cannot starve the others.
//
// Async submits and returns; Sync waits, running the block on the caller's goroutine as GCD
// does (never taking a worker). A Sync that would wait for the caller itself, such as a Sync
// onto the queue the caller is running on, panics (SyncContext returns ErrWouldDeadlock)
// instead of hanging.
//
// Blocking inside a block (network or disk I/O, a channel receive, time.Sleep) holds a
// worker for as long as it blocks, and the Global roots have only GOMAXPROCS workers: keep
// blocking calls out of blocks, or give them queues of their own that do not share a
// width-limited target with latency-sensitive work. A Sync caller that waits for a busy queue
// is the one exception the executor knows of: while a worker waits in Sync, another may
// start in its place.
//
// Panics: a panic in an Async block crashes the program, as it would in a goroutine, unless
// the queue (or a queue it targets) has WithPanicHandler; then the handler gets it and the
// queue goes on. A panic in a Sync block reaches the Sync caller.
//
// Tracing plugs in through Observer (the tracing package implements it); without one, a
// block costs one nil check for it.
//
// See ExampleQueue_Async, ExampleGuarded and examples/counter for the model in use.
package queue
