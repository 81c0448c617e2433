#!/usr/bin/env bash
# Runs dispatchkit's examples/echo and its four peers (gorilla/websocket written as its chat
# example is, plain coder/websocket, lxzan/gws and lesismal/nbio) one after another under the
# same loads from examples/loadgen, and prints one table. On a quiet machine, the whole
# comparison is this one command.
#
#   bench/ws/run.sh                     # N = 1000 10000 19000
#   SIZES=1000 bench/ws/run.sh          # just 1,000 connections
#   SERVERS="dispatchkit plain" bench/ws/run.sh
#   SIZES=19000 MODES=mostlyidle bench/ws/run.sh   # 19,000 connections, 1% of them sending
#   SENDERS=100 MODES=echo SIZES=10000 bench/ws/run.sh  # echo with 100 closed-loop senders
#   EXTRA_SERVERS=dispatchkit-goroutine bench/ws/run.sh  # ours with a reader goroutine per connection too
#
# Every server is started afresh for every run (so each memory figure starts from an empty
# server), on loopback, and stopped with SIGTERM after it. Each run is bounded well under 60s.
# The clients are spread over processes and source addresses so that no process holds more
# than 5,000 connections and no address runs out of ports; the server holds all N, so N
# must stay below `ulimit -n` (20,000 here). Environment: SIZES, SERVERS, MODES, ECHO_SECS,
# IDLE_SECS, SIZE (message bytes), SENDERS (echo: how many connections send; default all;
# mostlyidle always has N/100 send and shows as "NAME 1%"), CONNECT_TIMEOUT (bound on opening all N connections,
# default 90s: 19,000 on a loaded 2-core machine once took over 30s), OUT (results file,
# default a temporary one).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SIZES=${SIZES:-"1000 10000 19000"}
SERVERS=${SERVERS:-"dispatchkit gorilla plain gws nbio"}
SERVERS="$SERVERS ${EXTRA_SERVERS:-}"
MODES=${MODES:-"idle echo broadcast mostlyidle"}
SENDERS=${SENDERS:-0}
ECHO_SECS=${ECHO_SECS:-10}
IDLE_SECS=${IDLE_SECS:-3}
SIZE=${SIZE:-64}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-90s}
SRC=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8
PORT=${PORT:-18090}

# As many files as allowed: the server holds N sockets.
ulimit -n "$(ulimit -Hn)"
limit=$(ulimit -n)

bin=$(mktemp -d)
OUT=${OUT:-$bin/results.tsv}
: >"$OUT"
server_pid=
cleanup() {
	if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
	rm -rf "$bin"
}
trap cleanup EXIT

echo "building into $bin" >&2
(cd "$root" && go build -o "$bin/dispatchkit" ./examples/echo && go build -o "$bin/loadgen" ./examples/loadgen)
(cd "$root/bench" && go build -o "$bin/gorilla" ./ws/gorilla && go build -o "$bin/plain" ./ws/plain &&
	go build -o "$bin/gws" ./ws/gws && go build -o "$bin/nbio" ./ws/nbio && go build -o "$bin/table" ./ws/table)
# dispatchkit with the goroutine transport (a reader goroutine per connection), for comparison.
printf '#!/bin/sh\nWSSERVER_TRANSPORT=goroutine exec "%s/dispatchkit" "$@"\n' "$bin" >"$bin/dispatchkit-goroutine"
chmod +x "$bin/dispatchkit-goroutine"

# start_server NAME: starts it on $PORT and waits until it accepts connections.
start_server() {
	"$bin/$1" -addr "127.0.0.1:$PORT" 2>>"$bin/$1.log" &
	server_pid=$!
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "run.sh: $1 does not listen on 127.0.0.1:$PORT; its log:" >&2
	cat "$bin/$1.log" >&2
	exit 1
}

# stop_server: SIGTERM, then at most 20s for a graceful stop.
stop_server() {
	kill -TERM "$server_pid" 2>/dev/null || true
	for _ in $(seq 200); do
		if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
		sleep 0.1
	done
	kill -KILL "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

for n in $SIZES; do
	if ((n + 100 > limit)); then
		echo "run.sh: N=$n does not fit the server's file limit of $limit: skipped" >&2
		continue
	fi
	procs=$(((n + 4999) / 5000))
	for server in $SERVERS; do
		for mode in $MODES; do
			load=$mode senders=$SENDERS label=$server
			case $mode in
			idle) dur=${IDLE_SECS}s ;;
			echo) dur=${ECHO_SECS}s ;;
			broadcast) dur=30s ;; # 20 broadcasts, or 30s, whichever ends first
			mostlyidle) dur=${ECHO_SECS}s load=echo senders=$(((n + 99) / 100)) label="$server 1%" ;;
			esac
			echo "== $server N=$n $mode" >&2
			start_server "$server"
			# The figures go to OUT even when loadgen reports a failure (the table shows it).
			json=$("$bin/loadgen" -url "ws://127.0.0.1:$PORT/ws" -conns "$n" -procs "$procs" -src "$SRC" \
				-mode "$load" -senders "$senders" -duration "$dur" -size "$SIZE" -connect-timeout "$CONNECT_TIMEOUT" \
				-server-pid "$server_pid" -json) || echo "run.sh: loadgen failed for $server N=$n $mode" >&2
			stop_server
			if [[ -n $json ]]; then printf '%s\t%s\n' "$label" "$json" >>"$OUT"; fi
		done
	done
done

echo >&2
echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(go version | cut -d' ' -f3), message size $SIZE bytes," \
	"echo ${ECHO_SECS}s, idle ${IDLE_SECS}s, 20 broadcasts"
echo
"$bin/table" "$OUT"
