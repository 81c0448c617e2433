// Package bench holds dispatchkit's side-by-side benchmarks: each benchmark of ours has its
// peers beside it in the same file, measured in the same run, since on a shared machine only
// ratios mean something. It is a module of its own so that users of dispatchkit never
// download the peers (ants, pond, errgroup, gorilla/websocket).
//
//   - queue_test.go: serial Async against a channel and a mutex, a serial queue as a lock,
//     concurrent submit-and-wait against go+WaitGroup, ants, pond and errgroup, the cost of
//     an idle queue against a goroutine and a channel. run-queue.sh runs them with benchstat
//     and prints the ratios against issue 2's bars (cmd/ratios).
//   - ws/: the WebSocket peers of examples/echo (ws/gorilla, ws/plain) and ws/run.sh, which
//     runs all three under examples/loadgen at 1,000, 10,000 and 19,000 connections and
//     prints one table (ws/table).
//
// From the repository's root:
//
//	bench/run-queue.sh
//	SIZES=1000 bench/ws/run.sh
//
// The figures are in ../BENCHMARKS.md.
package bench
