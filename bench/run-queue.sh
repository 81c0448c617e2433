#!/usr/bin/env bash
# Runs the queue benchmarks beside their peers, interleaved: COUNT rounds, each running every
# benchmark once, so that a machine that gets busier or quieter hits ours and the peers' alike.
# Then benchstat's medians, and dispatchkit's figures as ratios to its peers' with the bars
# of issues 2 and 16. Run it alone on a quiet machine (`uptime`: load average below 1).
#
#   bench/run-queue.sh                         # about 6 minutes on 2 cores
#   COUNT=4 BENCHTIME=200ms bench/run-queue.sh
#   BASE=main~3 bench/run-queue.sh             # also an A/B of the queue benchmarks: the
#                                              # queue package at BASE against the work tree's
#
# The rows: serial Async vs a buffered channel and a mutex-guarded append; a queue idle after
# each block (a connection's message) vs goroutine + channel; Guarded.Async and Queue.Sync as
# a lock under 2-goroutine contention (-cpu 2) vs sync.Mutex; concurrent Async + wait vs
# go f() + WaitGroup, pond, ants, errgroup; ping-pong vs unbuffered channels; starfish
# (1,000 queues) vs goroutines + channels; idle queue bytes.
#
# The raw output stays in OUT (default bench/queue-bench.out) for benchstat comparisons.
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-10}
BENCHTIME=${BENCHTIME:-300ms}
OUT=${OUT:-queue-bench.out}
BASE=${BASE:-}

if ! command -v benchstat >/dev/null; then
	go install golang.org/x/perf/cmd/benchstat@latest
	PATH=$PATH:$(go env GOPATH)/bin
fi

tmp=$(mktemp -d)
cleanup() {
	if [ -n "$BASE" ]; then git worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

go test -c -o "$tmp/new.test" .
if [ -n "$BASE" ]; then
	# The same benchmarks (this tree's bench/) against the queue package at BASE.
	git worktree add --detach "$tmp/base" "$BASE" >/dev/null
	mkdir -p "$tmp/bench-base"
	cp ./*.go go.mod go.sum "$tmp/bench-base/"
	(cd "$tmp/bench-base" &&
		go mod edit -replace "github.com/dispatchkit/dispatchkit=$tmp/base" &&
		go test -c -o "$tmp/base.test" .)
fi

# name, then the -cpu it runs at ("" for the machine's GOMAXPROCS).
rows=(
	"SerialAsync:" "SerialAsyncNoProfileLabels:" "SerialPeerChannel:" "SerialPeerMutexDrainer:"
	"SerialPeerMutexAppend:" "SerialIdleRoundTrip:" "SerialIdleRoundTripPeerChannel:"
	"LockGuardedAsync:2" "LockQueueSync:2" "LockQueueSyncNoProfileLabels:2" "LockPeerMutex:2" "LockPeerChannelOwner:2"
	"ConcurrentAsync:" "ConcurrentPeerGoWaitGroup:" "ConcurrentPeerPond:" "ConcurrentPeerAnts:"
	"ConcurrentPeerErrgroup:"
	"PingPong:" "PingPongPeerChannels:"
	"Starfish:" "StarfishNoProfileLabels:" "StarfishPeerChannels:"
)
run() { # binary, name, cpu
	local cpu=()
	[ -n "$3" ] && cpu=(-test.cpu "$3")
	"$1" -test.run '^$' -test.bench "^Benchmark$2\$" -test.benchtime "$BENCHTIME" -test.benchmem "${cpu[@]}" |
		grep '^Benchmark' || true
}

echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(go version | cut -d' ' -f3), load: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$OUT"
for i in $(seq "$COUNT"); do
	echo "round $i/$COUNT" >&2
	for r in "${rows[@]}"; do
		name=${r%%:*} cpu=${r#*:}
		run "$tmp/new.test" "$name" "$cpu" | tee -a "$OUT" >>"$tmp/new.out"
		if [ -n "$BASE" ] && [[ $name != *Peer* ]]; then
			run "$tmp/base.test" "$name" "$cpu" >>"$tmp/base.out"
		fi
	done
done
# A million idle queues per run: one iteration each, IDLE runs (default 3; memory figures
# do not need more).
for i in $(seq "${IDLE:-3}"); do
	"$tmp/new.test" -test.run '^$' -test.bench '^BenchmarkIdle' -test.benchtime 1x | grep '^Benchmark' | tee -a "$OUT"
done
echo
benchstat "$OUT"
echo
go run ./cmd/ratios "$OUT"
if [ -n "$BASE" ]; then
	echo
	echo "A/B: queue at $BASE (old) vs the work tree (new), interleaved:"
	grep -v Peer "$tmp/new.out" >"$tmp/new-ours.out"
	benchstat "old=$tmp/base.out" "new=$tmp/new-ours.out"
fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
