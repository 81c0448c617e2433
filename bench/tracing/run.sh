#!/usr/bin/env bash
# Server CPU per echoed message of examples/echo with tracing off, with OTLP export at 1%
# sampling and at 100%, in one run: the three alternate round by round on the same machine,
# each a fresh server under the same examples/loadgen echo load, and the table shows each
# configuration's median and its ratio to off (issue 15's aims: 1% within 1.15x of off,
# 100% within 2.5x).
#
#   bench/tracing/run.sh                 # 3 rounds, 100 connections, 10 s each
#   ROUNDS=5 CONNS=1000 bench/tracing/run.sh
#   PROFILE=1 bench/tracing/run.sh       # also a CPU profile of each configuration's last round
#
# The spans go over OTLP/HTTP to bench/tracing/sink, which discards them, so the figure is the
# server's own cost (the SDK's batching, encoding and POSTs included) and not a backend's.
# Metrics are off (OTEL_METRICS_EXPORTER=none) in every configuration: this measures traces.
# Environment: ROUNDS, CONNS, SECS, SIZE (message bytes), CONFIGS, PORT, SINK_PORT, OUT.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-100}
SECS=${SECS:-10}
SIZE=${SIZE:-64}
CONFIGS=${CONFIGS:-"off otlp-1% otlp-100%"}
PORT=${PORT:-18190}
SINK_PORT=${SINK_PORT:-18191}

bin=$(mktemp -d)
OUT=${OUT:-$bin/results.tsv}
: >"$OUT"
server_pid= sink_pid=
cleanup() {
	for p in $server_pid $sink_pid; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

(cd "$root" && go build -o "$bin/echo" ./examples/echo && go build -o "$bin/loadgen" ./examples/loadgen)
(cd "$root/bench" && go build -o "$bin/sink" ./tracing/sink)
"$bin/sink" -addr "127.0.0.1:$SINK_PORT" &
sink_pid=$!

# env_of prints the OTEL_* settings of a configuration.
env_of() {
	case $1 in
	off) echo "OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none" ;;
	otlp-*%)
		pct=${1#otlp-}
		pct=${pct%\%}
		echo "OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=none" \
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT" \
			"OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=$(awk "BEGIN{print $pct/100}")"
		;;
	*) echo "run.sh: unknown configuration $1" >&2; exit 2 ;;
	esac
}

wait_listening() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "run.sh: the echo server did not listen on $PORT" >&2
	exit 1
}

for round in $(seq "$ROUNDS"); do
	for cfg in $CONFIGS; do
		echo "== round $round: $cfg" >&2
		# shellcheck disable=SC2046 # the settings are words on purpose
		env $(env_of "$cfg") "$bin/echo" -addr "127.0.0.1:$PORT" -pprof &
		server_pid=$!
		wait_listening
		prof= curl_pid=
		if [[ -n ${PROFILE:-} && $round == "$ROUNDS" ]]; then
			prof="$bin/cpu-${cfg%\%}.pprof"
			curl -s -o "$prof" "http://127.0.0.1:$PORT/debug/pprof/profile?seconds=$((SECS - 2))" &
			curl_pid=$!
		fi
		json=$("$bin/loadgen" -url "ws://127.0.0.1:$PORT/ws" -conns "$CONNS" -mode echo -duration "${SECS}s" \
			-size "$SIZE" -server-pid "$server_pid" -json | tr -d "\n") || echo "run.sh: loadgen failed for $cfg" >&2
		if [[ -n $curl_pid ]]; then wait "$curl_pid" || true; fi
		kill -TERM "$server_pid"
		wait "$server_pid" 2>/dev/null || true
		server_pid=
		if [[ -n $json ]]; then printf '%s\t%s\n' "$cfg" "$json" >>"$OUT"; fi
		if [[ -n $prof ]]; then echo "profile: $prof (go tool pprof -top $bin/echo $prof)" >&2; fi
	done
done

echo >&2
echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(go version | cut -d' ' -f3), $CONNS connections, echo ${SECS}s," \
	"$SIZE-byte messages, $ROUNDS rounds; server CPU per message (µs), median over rounds"
echo
# The table: per configuration the median CPU per message, msgs/s, and the ratio to off.
awk -F'\t' '
function median(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
	cfg = $1
	if (!(cfg in seen)) { seen[cfg] = 1; order[++k] = cfg }
	match($2, /"cpu_per_msg_us":[0-9.e+-]+/); cpu[cfg] = cpu[cfg] " " substr($2, RSTART + 17, RLENGTH - 17)
	match($2, /"msgs_per_s":[0-9.e+-]+/); rate[cfg] = rate[cfg] " " substr($2, RSTART + 13, RLENGTH - 13)
}
END {
	printf "| configuration | server CPU per message | msgs/s | vs off |\n|---|---|---|---|\n"
	off = ("off" in cpu) ? median(cpu["off"]) : 0
	for (i = 1; i <= k; i++) {
		c = order[i]; m = median(cpu[c])
		r = off > 0 ? sprintf("%.2fx", m / off) : "-"
		printf "| %s | %.1f µs (%s) | %.0f | %s |\n", c, m, cpu[c], median(rate[c]), r
	}
}' "$OUT"
echo
echo "sink: $(curl -s "http://127.0.0.1:$SINK_PORT/stats" || echo unreachable)"
