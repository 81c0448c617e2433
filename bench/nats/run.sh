#!/usr/bin/env bash
# Broadcast to N connections (default 10,000) on one node and split over two nodes linked by a
# NATS server, with examples/loadgen: the last receiver's latency, p50 and p99, per layout.
#
#   bench/nats/run.sh                  # N=10000, 3 runs of each layout
#   N=2000 RUNS=1 bench/nats/run.sh
#
# Layouts, each with fresh servers per run, all on loopback:
#   single        one examples/echo, no broker (rooms in-process)
#   single+nats   one examples/echo with -nats: the broker publishes, nobody else listens
#   two nodes     two examples/echo with -nats, loadgen's connections alternating between them;
#                 the broadcasts are sent by a connection on the first node
# The NATS server is built from the nats-server Go module in go.mod (Debian's nats-server
# package works the same). Environment: N, RUNS, BCASTS, SIZE, PROCS, OUT (results file).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-10000}
RUNS=${RUNS:-3}
BCASTS=${BCASTS:-20}
SIZE=${SIZE:-64}
PROCS=${PROCS:-4}
SRC=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8
NATS_PORT=${NATS_PORT:-14222}
P1=${P1:-18091}
P2=${P2:-18092}

ulimit -n "$(ulimit -Hn)"

bin=$(mktemp -d)
OUT=${OUT:-$bin/results.tsv}
: >"$OUT"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$bin"
}
trap cleanup EXIT

echo "building into $bin" >&2
(cd "$root" && go build -o "$bin/echo" ./examples/echo && go build -o "$bin/loadgen" ./examples/loadgen &&
	go build -o "$bin/nats-server" github.com/nats-io/nats-server/v2)

# wait_port PORT: until something accepts connections there (10s at most).
wait_port() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "run.sh: nothing listens on 127.0.0.1:$1; logs:" >&2
	cat "$bin"/*.log >&2
	exit 1
}

# stop_all: SIGTERM to every server started, and wait for them.
stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

start() { # start NAME PORT ARGS...: a server in the background
	local name=$1 port=$2
	shift 2
	"$@" 2>>"$bin/$name.log" &
	pids+=($!)
	wait_port "$port"
}

nats="nats://127.0.0.1:$NATS_PORT"
for run in $(seq "$RUNS"); do
	for layout in single single+nats two; do
		case $layout in
		single)
			start echo1 "$P1" "$bin/echo" -addr "127.0.0.1:$P1"
			url="ws://127.0.0.1:$P1/ws"
			;;
		single+nats)
			start nats "$NATS_PORT" "$bin/nats-server" -a 127.0.0.1 -p "$NATS_PORT"
			start echo1 "$P1" "$bin/echo" -addr "127.0.0.1:$P1" -nats "$nats"
			url="ws://127.0.0.1:$P1/ws"
			;;
		two)
			start nats "$NATS_PORT" "$bin/nats-server" -a 127.0.0.1 -p "$NATS_PORT"
			start echo1 "$P1" "$bin/echo" -addr "127.0.0.1:$P1" -nats "$nats"
			start echo2 "$P2" "$bin/echo" -addr "127.0.0.1:$P2" -nats "$nats"
			url="ws://127.0.0.1:$P1/ws,ws://127.0.0.1:$P2/ws"
			;;
		esac
		echo "run $run: $layout, N=$N" >&2
		json=$("$bin/loadgen" -url "$url" -conns "$N" -procs "$PROCS" -src "$SRC" -mode broadcast \
			-broadcasts "$BCASTS" -size "$SIZE" -duration 60s -q -json) || echo "run.sh: loadgen failed ($layout)" >&2
		printf '%s\t%s\t%s\n' "$layout" "$run" "$json" >>"$OUT"
		stop_all
	done
done

# One line per run, then the medians per layout.
python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    layout, run, js = line.rstrip("\n").split("\t", 2)
    r = json.loads(js) if js else {}
    rows.setdefault(layout, []).append(r)
    print(f"{layout:12} run {run}: connected {r.get('connected')}, complete {r.get('broadcasts_complete')}/{r.get('broadcasts')}, "
          f"deliveries {r.get('broadcast_deliveries')}, last p50 {r.get('last_p50_ms')} ms, p99 {r.get('last_p99_ms')} ms, errors {r.get('errors')}, lost {r.get('lost')}")
print()
print("| layout | runs | last receiver p50 ms (median of runs) | p99 ms (median of runs) |")
print("|---|---|---|---|")
for layout, rs in rows.items():
    p50 = [r["last_p50_ms"] for r in rs if r.get("last_p50_ms")]
    p99 = [r["last_p99_ms"] for r in rs if r.get("last_p99_ms")]
    if p50:
        print(f"| {layout} | {len(p50)} | {statistics.median(p50):.1f} | {statistics.median(p99):.1f} |")
EOF
