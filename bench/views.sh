#!/usr/bin/env bash
# Benchmark of the research tables (SQL on FHIR views):
#  1. `fhirdeid view` with each built-in view over the files of its resource
#     type, to Parquet: rows, rows/s, MB/s of uncompressed NDJSON read,
#     peak RSS (/usr/bin/time -v);
#  2. `fhirdeid run` of the same data from a local bulkserver, with the
#     built-in Safe Harbor configuration, without views and with
#     `views: [builtin]`: wall time, CPU and peak RSS, and their ratio (the
#     issue's budget: ≤ 1.3× and < 256 MB).
#
# Usage: bench/views.sh [DATA_DIR [RUNS]]
# Default data: ../shared/data/synthea-1000-clone (381,066 resources, 480 MB raw).
# RUNS (default 1) repeats the pair of runs, alternating without and with
# views, and reports the ratio of the CPU time summed over the repeats: on
# a shared machine, one pair is too noisy to judge a 1.3x budget.
# SNAPSHOT=false in the environment turns the merged snapshot off in both
# runs (by default each run also merges its snapshot, whose tables are
# computed again from the snapshot's own files).
# RUNS_ONLY=1 skips part 1. A snapshot reuses the tables its run wrote when
# it holds exactly the run's resources of a type (snapshot.json
# merge.tablesReused, printed below): with one full run, every type.
# Results go to bench/out/views-<date>.txt. On a shared machine, note the
# load average the report prints; the with/without ratio is measured in the
# same run.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FHIRDEID_SHARED:-../shared}
DATA=${1:-$SHARED/data/synthea-1000-clone}
RUNS=${2:-1}
[ -d "$DATA" ] || { echo "views.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "views.sh: /usr/bin/time is needed for CPU and RSS figures" >&2; exit 1; }
DATA=$(cd "$DATA" && pwd)

work=$(mktemp -d)
trap 'kill "${srv_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid

elapsed() { sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
cpu() { awk -v u="$(sed -n 's/^\s*User time (seconds): //p' "$1")" -v s="$(sed -n 's/^\s*System time (seconds): //p' "$1")" 'BEGIN{printf "%.1f", u+s}'; }
rss() { awk -v k="$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$1")" 'BEGIN{printf "%.0f", k/1024}'; }

mkdir -p bench/out
report="bench/out/views-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
echo "fhirdeid views benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(go version | cut -d' ' -f3); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "data: $DATA"
echo
if [ -z "${RUNS_ONLY:-}" ]; then
echo "1. fhirdeid view builtin:NAME -o NAME.parquet TYPE.*.ndjson.gz"
printf "%-22s %10s %10s %9s %10s %8s %8s %10s\n" view resources rows seconds rows/s MB/s cpu-s peakRSS-MB
for name in $("$work/fhirdeid" view --list | sed -n 's/^builtin:\([a-z_]*\) *\([A-Za-z]*\) .*/\1:\2/p'); do
  v=${name%%:*}; typ=${name#*:}
  files=("$DATA"/"$typ".*.ndjson.gz)
  mb=$(for f in "${files[@]}"; do gzip -dc "$f"; done | wc -c | awk '{printf "%.1f", $1/1e6}')
  /usr/bin/time -v "$work/fhirdeid" view --view "builtin:$v" -o "$work/$v.parquet" "${files[@]}" 2>"$work/$v.time" >/dev/null
  line=$(grep -m1 '^view ' "$work/$v.time")
  rows=$(echo "$line" | sed -n 's/^view [a-z_]*: \([0-9]*\) rows from \([0-9]*\) resources.*/\1/p')
  res=$(echo "$line" | sed -n 's/^view [a-z_]*: \([0-9]*\) rows from \([0-9]*\) resources.*/\2/p')
  s=$(elapsed "$work/$v.time")
  printf "%-22s %10s %10s %9.2f %10.0f %8.1f %8s %10s\n" "$v" "$res" "$rows" "$s" \
    "$(awk -v r="$rows" -v s="$s" 'BEGIN{print (s>0)?r/s:0}')" "$(awk -v m="$mb" -v s="$s" 'BEGIN{print (s>0)?m/s:0}')" "$(cpu "$work/$v.time")" "$(rss "$work/$v.time")"
done
fi

echo
echo "2. fhirdeid run (export from a local bulkserver, Safe Harbor, file:// destination, snapshot ${SNAPSHOT:-true}), without and with views: [builtin]"
"$work/fhirdeid" bulkserver --data "$DATA" --passthrough --polls 1 --retry-after 1 >"$work/server.out" 2>"$work/server.err" &
srv_pid=$!
# This block runs in a subshell (it is piped to tee): the script's EXIT trap
# does not see srv_pid, so the subshell stops the server itself.
trap 'kill "$srv_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "FHIR base" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^bulkserver: FHIR base //p' "$work/server.out")
[ -n "$base" ] || { echo "views.sh: server did not start" >&2; cat "$work/server.err" >&2; exit 1; }
printf "%-22s %9s %12s %8s %10s\n" "" seconds resources/s cpu-s peakRSS-MB
secs_none=0; secs_views=0; cpu_none=0; cpu_views=0; rss_none=0; rss_views=0
for i in $(seq "$RUNS"); do
for mode in none views; do
  extra=""
  [ "$mode" = views ] && extra="    views: [builtin]"
  [ "${SNAPSHOT:-}" = false ] && extra="$extra
    snapshot: false"
  rm -rf "$work/state-$mode" "$work/lake-$mode"
  cat >"$work/$mode.yml" <<YAML
state: $work/state-$mode/state.db
pipelines:
  bench:
    source: {url: $base, maxPollInterval: 1s}
    destination: file://$work/lake-$mode
$extra
YAML
  /usr/bin/time -v "$work/fhirdeid" run -q "$work/$mode.yml" >"$work/$mode.out" 2>"$work/$mode.time" || { cat "$work/$mode.out" "$work/$mode.time" >&2; exit 1; }
  res=$(sed -n 's/^run [^ ]* [a-z]*: \([0-9]*\) resources.*/\1/p' "$work/$mode.out")
  s=$(elapsed "$work/$mode.time")
  c=$(cpu "$work/$mode.time")
  m=$(rss "$work/$mode.time")
  eval "secs_$mode=\$(awk -v a=\"\$secs_$mode\" -v b=\"$s\" 'BEGIN{print a+b}')"
  eval "cpu_$mode=\$(awk -v a=\"\$cpu_$mode\" -v b=\"$c\" 'BEGIN{print a+b}')"
  eval "rss_$mode=\$(awk -v a=\"\$rss_$mode\" -v b=\"$m\" 'BEGIN{print (b>a)?b:a}')"
  printf "%-22s %9.2f %12.0f %8s %10s\n" "run $i, $mode" "$s" "$(awk -v r="$res" -v s="$s" 'BEGIN{print r/s}')" "$c" "$m"
done
done
echo "tables written: $(find "$work"/lake-views/*/views -name '*.parquet' | wc -l) Parquet parts, $(du -sh "$work"/lake-views/*/views | cut -f1)"
for sj in "$work"/lake-views/snapshots/*/snapshot.json; do
  [ -f "$sj" ] && echo "snapshot tables reused (type: source): $(sed -n '/"tablesReused"/,/}/p' "$sj" | grep -c '": "') types"
done
echo "with views / without, over $RUNS pair(s): $(awk -v a="$secs_views" -v b="$secs_none" 'BEGIN{printf "%.2f", a/b}')x wall time, $(awk -v a="$cpu_views" -v b="$cpu_none" 'BEGIN{printf "%.2f", a/b}')x CPU time (on a loaded machine, CPU time is the stable figure); peak RSS $rss_views MB with views, $rss_none MB without"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$report"
