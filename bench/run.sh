#!/usr/bin/env bash
# End-to-end benchmark of `fhirdeid run`: a local `fhirdeid bulkserver`
# serves a data set over loopback, and the pipeline exports, de-identifies
# (Microsoft's r4-configuration-sample.json) and stores it into a file://
# destination. Reports resources/s and peak RSS, and the ratio to
# `fhirdeid anonymize` of the same data and configuration (export and upload
# should hide behind de-identification).
#
# Usage: bench/run.sh [DATA_DIR]
# Default data: ../shared/data/synthea-1000-clone. Results: bench/out/run-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FHIRDEID_SHARED:-../shared}
DATA=${1:-$SHARED/data/synthea-1000-clone}
CONFIG=${CONFIG:-$SHARED/conformance/ms-anonymizer/FHIR/src/Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests/r4-configuration-sample.json}
[ -d "$DATA" ] || { echo "run.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "run.sh: /usr/bin/time is needed for CPU and RSS figures" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill "${srv_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")

"$work/fhirdeid" bulkserver --data "$DATA" --passthrough --polls 1 --retry-after 1 >"$work/server.out" 2>"$work/server.err" &
srv_pid=$!
for _ in $(seq 50); do grep -q "FHIR base" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^bulkserver: FHIR base //p' "$work/server.out")
[ -n "$base" ] || { echo "run.sh: server did not start" >&2; cat "$work/server.err" >&2; exit 1; }

cat >"$work/fhirdeid.yml" <<YAML
state: $work/state/state.db
pipelines:
  bench:
    source: {url: $base, maxPollInterval: 1s}
    anonymizer: {config: $CONFIG}
    destination: file://$work/lake
YAML

elapsed() { sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
/usr/bin/time -v "$work/fhirdeid" run -q "$work/fhirdeid.yml" >"$work/run.out" 2>"$work/run.time"
res=$(sed -n 's/^run [^ ]* [a-z]*: \([0-9]*\) resources.*/\1/p' "$work/run.out")
run_s=$(elapsed "$work/run.time")
run_rss=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$work/run.time")

/usr/bin/time -v "$work/fhirdeid" anonymize -i "$DATA" -o "$work/anon" -b -c "$CONFIG" >/dev/null 2>"$work/anon.time"
anon_s=$(elapsed "$work/anon.time")
anon_rss=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$work/anon.time")

mkdir -p bench/out
report="bench/out/run-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "fhirdeid run benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(go version | cut -d' ' -f3)"
  echo "data: $DATA, $res resources, served by fhirdeid bulkserver over loopback, stored to file://"
  printf "%-32s %9s %12s %10s\n" "" seconds resources/s peakRSS-MB
  printf "%-32s %9.2f %12.0f %10.0f\n" "fhirdeid run (end to end)" "$run_s" "$(awk -v r="$res" -v s="$run_s" 'BEGIN{print r/s}')" "$(awk -v k="$run_rss" 'BEGIN{print k/1024}')"
  printf "%-32s %9.2f %12.0f %10.0f\n" "fhirdeid anonymize (same data)" "$anon_s" "$(awk -v r="$res" -v s="$anon_s" 'BEGIN{print r/s}')" "$(awk -v k="$anon_rss" 'BEGIN{print k/1024}')"
  echo "end to end / de-identification alone: $(awk -v a="$run_s" -v b="$anon_s" 'BEGIN{printf "%.2f", a/b}')x"
} | tee "$report"
