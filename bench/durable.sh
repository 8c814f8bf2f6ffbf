#!/usr/bin/env bash
# Benchmark of the durable (Temporal) pipeline against the in-process one:
# a local `fhirdeid bulkserver` serves a data set over loopback in parts of
# PART_SIZE resources; `fhirdeid run` exports, de-identifies (the built-in
# profile, a key file) and stores it into a file:// destination, first in
# one process (pipeline.Run), then as a Temporal workflow run by two
# `fhirdeid worker` processes on this machine, ROUNDS times each (default
# 5), back to back so that both see the same machine load. Reports the
# median wall time of each, the overhead of Temporal (the median of the
# per-round ratios too, which cancels slow load drifts), the CPU seconds of
# each (user+sys: the run process; for the durable runs the two workers'
# too), the load average before and after, the activities per run and the
# size of the workflow history (`temporal workflow show -o json`). The
# merged snapshot is off in both (snapshot.sh measures it); so are the
# audit and risk checks, unless CHECKS=1 (then both run them: in the
# durable runs, in stream on each worker and in the Assure activity).
#
# Needs the Temporal CLI (go install github.com/temporalio/cli/cmd/temporal@v1.5.1);
# uses the server at FHIRDEID_TEMPORAL, or starts a dev server of its own.
#
# Usage: bench/durable.sh [DATA_DIR]
# Default data: ../shared/data/synthea-1000-clone. Results: bench/out/durable-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FHIRDEID_SHARED:-../shared}
DATA=${1:-$SHARED/data/synthea-1000-clone}
PART_SIZE=${PART_SIZE:-5000}
ROUNDS=${ROUNDS:-5}
CHECKS=${CHECKS:-0}
# The pipeline's files at once (its concurrency: pipeline.Run's, and the
# workflow's unless CONCURRENCY is set), the workflow's and each worker's
# (temporal.concurrency and temporal.workerFiles); empty: the defaults
# (pipeline.Run 2 files, the workflow 2 × workerFiles, workerFiles 4).
PIPE_CONCURRENCY=${PIPE_CONCURRENCY:-}
CONCURRENCY=${CONCURRENCY:-}
WORKER_FILES=${WORKER_FILES:-}
TEMPORAL=${TEMPORAL:-$(go env GOPATH)/bin/temporal}
[ -d "$DATA" ] || { echo "durable.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -x "$TEMPORAL" ] || { echo "durable.sh: the Temporal CLI is needed: go install github.com/temporalio/cli/cmd/temporal@v1.5.1" >&2; exit 1; }

work=$(mktemp -d)
pids=()
# KEEP=1 keeps the work folder (runs, logs, history) and prints its path.
trap 'kill "${pids[@]}" 2>/dev/null || true; if [ "${KEEP:-}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid
go build -o "$work/histgaps" ./bench/histgaps

addr=${FHIRDEID_TEMPORAL:-}
if [ -z "$addr" ]; then
  port=$((20000 + RANDOM % 20000))
  "$TEMPORAL" server start-dev --headless --ip 127.0.0.1 --port "$port" --http-port $((port + 1)) --log-level error >"$work/temporal.log" 2>&1 &
  pids+=($!)
  addr=127.0.0.1:$port
  for _ in $(seq 150); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
fi

"$work/fhirdeid" bulkserver --data "$DATA" --part-size "$PART_SIZE" --polls 1 --retry-after 1 >"$work/server.out" 2>"$work/server.err" &
pids+=($!)
for _ in $(seq 100); do grep -q "FHIR base" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^bulkserver: FHIR base //p' "$work/server.out")
[ -n "$base" ] || { echo "durable.sh: server did not start" >&2; cat "$work/server.err" >&2; exit 1; }
"$work/fhirdeid" keys init "$work/keys.json" >/dev/null

name=bench$RANDOM
config() { # config DIR [temporal]
  mkdir -p "$1"
  cat >"$1/fhirdeid.yml" <<YAML
state: $1/state/state.db
pipelines:
  $name:
    source: {url: $base, maxPollInterval: 1s}
    anonymizer: {keysFile: $work/keys.json}
    destination: file://$1/lake
    snapshot: false
YAML
  [ -z "$PIPE_CONCURRENCY" ] || printf '    concurrency: %s\n' "$PIPE_CONCURRENCY" >>"$1/fhirdeid.yml"
  if [ "$CHECKS" != 1 ]; then
    printf '    audit: {enabled: false}\n    risk: {enabled: false}\n' >>"$1/fhirdeid.yml"
  fi
  if [ -n "${2:-}" ]; then
    printf 'temporal:\n  hostPort: %s\n  taskQueue: %s\n' "$addr" "q$name" >>"$1/fhirdeid.yml"
    [ -z "$CONCURRENCY" ] || printf '  concurrency: %s\n' "$CONCURRENCY" >>"$1/fhirdeid.yml"
    [ -z "$WORKER_FILES" ] || printf '  workerFiles: %s\n' "$WORKER_FILES" >>"$1/fhirdeid.yml"
  fi
  echo "$1/fhirdeid.yml"
}
now() { date +%s.%N; }

icfg=$(config "$work/inproc")
dcfg=$(config "$work/durable" temporal)
wpids=()
# Each worker gets its share of the cores (WORKER_GOMAXPROCS, default
# half of them, at least 1), as two worker containers with CPU limits on a
# machine would (Go sets GOMAXPROCS from a container's CPU limit); "" lets
# each worker use every core.
WORKER_GOMAXPROCS=${WORKER_GOMAXPROCS-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
# PROFILE=DIR writes CPU profiles into DIR: each worker's (worker1.prof,
# worker2.prof, all rounds) and the in-process runs' (inproc-N.prof).
for i in 1 2; do
  GOMAXPROCS=$WORKER_GOMAXPROCS "$work/fhirdeid" worker ${PROFILE:+-cpuprofile "$PROFILE/worker$i.prof"} "$dcfg" >"$work/worker$i.log" 2>&1 &
  pids+=($!); wpids+=($!)
done
for i in 1 2; do for _ in $(seq 300); do grep -q "worker on task queue" "$work/worker$i.log" && break; sleep 0.1; done; done
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# cpu PID...: user+sys seconds of the processes so far.
cpu() { for p in "$@"; do awk '{print ($14+$15)/100}' "/proc/$p/stat"; done | awk '{s+=$1} END{printf "%.2f\n", s}'; }
: >"$work/inproc.times"; : >"$work/durable.times"; : >"$work/inproc.cpu"; : >"$work/durable.cpu"; : >"$work/ratios"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
  t0=$(now); /usr/bin/time -f "%U %S" -o "$work/time.out" "$work/fhirdeid" run -q ${PROFILE:+-cpuprofile "$PROFILE/inproc-$r.prof"} "$icfg" >"$work/inproc.out"; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}' >>"$work/inproc.times"
  awk '{printf "%.2f\n", $1+$2}' "$work/time.out" >>"$work/inproc.cpu"
  w0=$(cpu "${wpids[@]}")
  t0=$(now); /usr/bin/time -f "%U %S" -o "$work/time.out" "$work/fhirdeid" run -q "$dcfg" >"$work/durable.out"; t1=$(now)
  w1=$(cpu "${wpids[@]}")
  awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}' >>"$work/durable.times"
  awk -v w0="$w0" -v w1="$w1" '{printf "%.2f\n", $1+$2+w1-w0}' "$work/time.out" >>"$work/durable.cpu"
  paste "$work/inproc.times" "$work/durable.times" | tail -1 | awk '{printf "%.4f\n", $2/$1}' >>"$work/ratios"
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
inproc=$(median <"$work/inproc.times")
durable=$(median <"$work/durable.times")
ratio=$(median <"$work/ratios")
res=$(sed -n 's/^run [^ ]* [a-z]*: \([0-9]*\) resources.*/\1/p' "$work/inproc.out")
dres=$(sed -n 's/^run [^ ]* [a-z]*: \([0-9]*\) resources.*/\1/p' "$work/durable.out")

if [ -n "${PROFILE:-}" ]; then kill -INT "${wpids[@]}"; wait "${wpids[@]}" 2>/dev/null || true; fi
"$TEMPORAL" workflow show --address "$addr" -w "fhirdeid-$name" -o json >"$work/history.json"
hist=$(wc -c <"$work/history.json")
events=$(grep -c '"eventId"' "$work/history.json")
acts=$(grep -c '"EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"' "$work/history.json")
files=$(grep -c '"name": "ProcessFile"' "$work/history.json" || true)

mkdir -p bench/out
report="bench/out/durable-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "fhirdeid durable benchmark $(date -u +%FT%TZ) on $(nproc) cores, load average $load0 before, $load1 after, $(go version | cut -d' ' -f3)"
  echo "data: $DATA in parts of $PART_SIZE, $res resources (durable: $dres), bulkserver over loopback, file:// destination, privacy checks $([ "$CHECKS" = 1 ] && echo on || echo off)"
  echo "rounds (back to back): pipeline.Run $(paste -sd' ' "$work/inproc.times") s; workflow $(paste -sd' ' "$work/durable.times") s"
  echo "CPU seconds (user+sys) per round: pipeline.Run $(paste -sd' ' "$work/inproc.cpu"); workflow (run + workers) $(paste -sd' ' "$work/durable.cpu")"
  printf "%-40s %9s %12s\n" "median" seconds resources/s
  printf "%-40s %9.2f %12.0f\n" "pipeline.Run (one process)" "$inproc" "$(awk -v r="$res" -v s="$inproc" 'BEGIN{print r/s}')"
  printf "%-40s %9.2f %12.0f\n" "Temporal workflow, two workers" "$durable" "$(awk -v r="$dres" -v s="$durable" 'BEGIN{print r/s}')"
  echo "overhead of Temporal: $(awk -v a="$durable" -v b="$inproc" 'BEGIN{printf "%+.1f %%", (a/b-1)*100}') of the medians; median of the per-round ratios $(awk -v r="$ratio" 'BEGIN{printf "%+.1f %%", (r-1)*100}'); CPU $(awk -v a="$(median <"$work/durable.cpu")" -v b="$(median <"$work/inproc.cpu")" 'BEGIN{printf "%.1f s vs %.1f s (%+.1f %%)", a, b, (a/b-1)*100}')"
  echo "workflow history: $events events, $hist bytes of JSON; $acts activities ($files ProcessFile); concurrency ${PIPE_CONCURRENCY:-default}, temporal.concurrency ${CONCURRENCY:-default}, workerFiles ${WORKER_FILES:-default}"
  "$work/histgaps" "$work/history.json"
} | tee "$report"
