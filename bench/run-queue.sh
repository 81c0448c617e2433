#!/usr/bin/env bash
# Runs the queue benchmarks beside their peers, 6 times each, and prints benchstat's
# medians and then dispatchkit's figures as ratios to its peers', with issue 2's bars.
#
#   bench/run-queue.sh                 # about 4 minutes on 2 cores
#   COUNT=3 BENCHTIME=200ms bench/run-queue.sh
#
# The raw output stays in OUT (default bench/queue-bench.out) for benchstat comparisons.
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-500ms}
OUT=${OUT:-queue-bench.out}

if ! command -v benchstat >/dev/null; then
	go install golang.org/x/perf/cmd/benchstat@latest
	PATH=$PATH:$(go env GOPATH)/bin
fi

echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(go version | cut -d' ' -f3)"
go test -run '^$' -bench '^Benchmark(Serial|Lock|Concurrent|PingPong|Starfish)' -count "$COUNT" -benchtime "$BENCHTIME" . | tee "$OUT"
# A million idle queues per run: one iteration each.
go test -run '^$' -bench '^BenchmarkIdle' -count "$COUNT" -benchtime 1x . | tee -a "$OUT"
echo
benchstat "$OUT"
echo
go run ./cmd/ratios "$OUT"
