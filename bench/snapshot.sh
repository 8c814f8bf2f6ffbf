#!/usr/bin/env bash
# Benchmark of the merged snapshot (current): a lake made of a full run of
# DATA plus an incremental run carrying a 10 % change set (6 % updates, 2 %
# deletions, 2 % new resources), merged by `fhirdeid snapshot`. For the lake
# and for a lake twice as large (DATA plus a copy with other ids), reports
# the merge throughput (MB/s of uncompressed NDJSON read) and the peak RSS
# of three merges:
#   initial      the first snapshot: the full run sorted (external sort)
#   incremental  the nightly case: the published snapshot + the 10 % delta
#   rebuild      `fhirdeid snapshot`: both runs sorted and merged anew
# The merge's memory does not depend on the lake's size: the two lakes must
# show the same peak RSS, under 256 MB. On a shared machine the wall-clock
# MB/s follows the load; MB per CPU-second (user + system) does less.
# Go side: go test ./pipeline -run X -bench SnapshotMerge (a smaller lake).
#
# Usage: bench/snapshot.sh [DATA_DIR]
# Default data: ../shared/data/synthea-1000-clone. Results: bench/out/snapshot-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FHIRDEID_SHARED:-../shared}
DATA=${1:-$SHARED/data/synthea-1000-clone}
CONFIG=${CONFIG:-$SHARED/conformance/ms-anonymizer/FHIR/src/Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests/r4-configuration-sample.json}
[ -d "$DATA" ] || { echo "snapshot.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "snapshot.sh: /usr/bin/time is needed for RSS figures" >&2; exit 1; }
command -v jq >/dev/null || { echo "snapshot.sh: jq is needed" >&2; exit 1; }
DATA=$(cd "$DATA" && pwd)
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")

work=$(mktemp -d)
srv_pid=
trap 'kill "$srv_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid
# Fixed keys: the sample leaves encryptKey empty (a random key per run), and
# runs de-identified with other keys cannot be merged.
sed '1s/^\xEF\xBB\xBF//' "$CONFIG" | jq '.parameters.encryptKey = "0123456789abcdef0123456789abcdef"' >"$work/anonymizer.json"
CONFIG=$work/anonymizer.json

# The doubled data: every file again, with ids and literal references
# prefixed, so that the second copy is other resources.
mkdir -p "$work/data-1x" "$work/data-2x"
for f in "$DATA"/*.ndjson.gz; do
  ln -s "$f" "$work/data-1x/$(basename "$f")"
  ln -s "$f" "$work/data-2x/$(basename "$f")"
  t=$(basename "$f" | cut -d. -f1)
  zcat "$f" | sed -E 's/"id":"/"id":"d/g; s/"reference":"([A-Z][A-Za-z]+)\//"reference":"\1\/d/g' | gzip -1 >"$work/data-2x/$t.900.ndjson.gz"
done

elapsed() { sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
cpu_s() { awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$1"; }
rss_mb() { sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$1" | awk '{printf "%.0f", $1/1024}'; }

results="$work/results"
: >"$results"
for size in 1x 2x; do
  dir="$work/$size"
  mkdir -p "$dir"
  n=$(zcat "$work/data-$size"/*.ndjson.gz | wc -l)
  u=$((n * 6 / 100)); d=$((n * 2 / 100)); a=$((n * 2 / 100))
  "$work/fhirdeid" bulkserver --data "$work/data-$size" --passthrough --part-size 20000 --polls 1 --retry-after 1 \
    --random-changes "$u,$d,$a" --changes-after 1 >"$dir/server.out" 2>"$dir/server.err" &
  srv_pid=$!
  for _ in $(seq 600); do grep -q "FHIR base" "$dir/server.out" 2>/dev/null && break; sleep 0.2; done
  base=$(sed -n 's/^bulkserver: FHIR base //p' "$dir/server.out")
  [ -n "$base" ] || { echo "snapshot.sh: server did not start" >&2; cat "$dir/server.err" >&2; exit 1; }
  cat >"$dir/fhirdeid.yml" <<YAML
state: $dir/state/state.db
pipelines:
  bench:
    source: {url: $base, since: auto, maxPollInterval: 1s}
    anonymizer: {config: $CONFIG}
    destination: file://$dir/lake
    snapshot: false
YAML
  merge() { # name args...
    local name=$1; shift
    /usr/bin/time -v "$work/fhirdeid" snapshot "$@" "$dir/fhirdeid.yml" >"$dir/$name.out" 2>"$dir/$name.time" ||
      { cat "$dir/$name.out" "$dir/$name.time" >&2; exit 1; }
    local cur; cur=$(cat "$dir/lake/current")
    local js="$dir/lake/snapshots/$cur/snapshot.json"
    local mb; mb=$(jq '.merge.bytesRead / 1048576' "$js")
    local sec; sec=$(elapsed "$dir/$name.time")
    local cpu; cpu=$(cpu_s "$dir/$name.time")
    printf "%-4s %-12s %10d %9.0f %8.2f %9.1f %8.2f %9.1f %8s %7d %8d\n" "$size" "$name" "$(jq .resources "$js")" "$mb" "$sec" \
      "$(awk -v m="$mb" -v s="$sec" 'BEGIN{print m/s}')" "$cpu" "$(awk -v m="$mb" -v s="$cpu" 'BEGIN{print m/s}')" \
      "$(rss_mb "$dir/$name.time")" "$(jq .merge.spills "$js")" "$(jq .integrity.unresolved "$js")" >>"$results"
  }
  "$work/fhirdeid" run -q "$dir/fhirdeid.yml" >"$dir/run1.out"
  merge initial --incremental
  "$work/fhirdeid" run -q "$dir/fhirdeid.yml" >"$dir/run2.out"
  merge incremental --incremental
  merge rebuild
  kill "$srv_pid"; wait "$srv_pid" 2>/dev/null || true; srv_pid=
  echo "lake $size: $n resources; run 2: $(cat "$dir/run2.out" | head -1)" >>"$work/lakes"
done

mkdir -p bench/out
report="bench/out/snapshot-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "fhirdeid snapshot benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(go version | cut -d' ' -f3), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "data: $DATA (1x) and the data twice (2x); change set: 6 % updates, 2 % deletions, 2 % new"
  cat "$work/lakes"
  printf "%-4s %-12s %10s %9s %8s %9s %8s %9s %8s %7s %8s\n" lake merge resources read-MB seconds MB/s cpu-s MB/cpu-s RSS-MB spills unresolved
  cat "$results"
  max1=$(awk '$1=="1x"{if($9>m)m=$9} END{print m}' "$results")
  max2=$(awk '$1=="2x"{if($9>m)m=$9} END{print m}' "$results")
  echo "peak RSS: 1x $max1 MB, 2x $max2 MB (ratio $(awk -v a="$max2" -v b="$max1" 'BEGIN{printf "%.2f", a/b}')); limit 256 MB"
} | tee "$report"
