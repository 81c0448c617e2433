#!/usr/bin/env bash
# What the Observer hooks cost a queue that has none: the same benchmarks built with the hooks
# (the normal build) and without them (-tags dispatchkit_nohooks), alternating runs so that
# a noisy machine hits both alike, then benchstat's comparison.
#
#   bench/run-hooks.sh             # about 2 minutes on 2 cores
#   COUNT=3 bench/run-hooks.sh
set -euo pipefail
cd "$(dirname "$0")"
COUNT=${COUNT:-8}
BENCH1='^BenchmarkSerialAsync$'
BENCH2='^Benchmark(TracingSync|TracingBlock)$/^NoObserver$'
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if ! command -v benchstat >/dev/null; then
	go install golang.org/x/perf/cmd/benchstat@latest
	PATH=$PATH:$(go env GOPATH)/bin
fi
go test -c -o "$out/hooks.test" .
go test -c -tags dispatchkit_nohooks -o "$out/nohooks.test" .
echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(go version | cut -d' ' -f3)"
for _ in $(seq "$COUNT"); do
	for b in "$BENCH1" "$BENCH2"; do
		"$out/nohooks.test" -test.run '^$' -test.bench "$b" -test.benchtime 300ms >>"$out/nohooks.out"
		"$out/hooks.test" -test.run '^$' -test.bench "$b" -test.benchtime 300ms >>"$out/hooks.out"
	done
done
benchstat "$out/nohooks.out" "$out/hooks.out"
