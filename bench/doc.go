// Package bench holds dispatchkit's side-by-side benchmarks: each benchmark of ours has its
// peers beside it in the same file, measured in the same run. It is a module of its own so
// that users of dispatchkit never download the peers (ants, pond, errgroup, gorilla/websocket).
//
//	cd bench && go test -bench . -count 6 | tee new.txt && benchstat new.txt
//
// See ../BENCHMARKS.md for the figures and ../shared BENCH.md conventions.
package bench
