#!/usr/bin/env bash
# Cost of the privacy checks (leak audit and risk analysis) of `fhirdeid run`:
# a local `fhirdeid bulkserver` serves a data set over loopback and the same
# pipeline (built-in Safe Harbor configuration, file:// destination) runs
# with the checks off and on, alternately, ROUNDS times each. Reports wall
# and CPU seconds of each and the checks' share; then the peak RSS of
# `fhirdeid risk` on the de-identified run and on the raw data.
#
# Usage: bench/assure.sh [DATA_DIR]   (ROUNDS=2 by default)
# Default data: ../shared/data/synthea-1000-clone. Results: bench/out/assure-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FHIRDEID_SHARED:-../shared}
DATA=${1:-$SHARED/data/synthea-1000-clone}
ROUNDS=${ROUNDS:-2}
[ -d "$DATA" ] || { echo "assure.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "assure.sh: /usr/bin/time is needed for CPU and RSS figures" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill "${srv_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid

"$work/fhirdeid" bulkserver --data "$DATA" --passthrough --polls 1 --retry-after 1 >"$work/server.out" 2>"$work/server.err" &
srv_pid=$!
for _ in $(seq 50); do grep -q "FHIR base" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^bulkserver: FHIR base //p' "$work/server.out")
[ -n "$base" ] || { echo "assure.sh: server did not start" >&2; cat "$work/server.err" >&2; exit 1; }

# Fixed keys, so that the runs of a pipeline may follow each other; no
# snapshot merge (it would add the same cost to both, and hide the checks').
export FHIRDEID_CRYPTO_HASH_KEY=bench-hash-key-0123456789abcdef FHIRDEID_DATE_SHIFT_KEY=bench-shift-key FHIRDEID_ENCRYPT_KEY=0123456789abcdef0123456789abcdef
cat >"$work/fhirdeid.yml" <<YAML
state: $work/state/state.db
pipelines:
  off:
    source: {url: $base, maxPollInterval: 1s}
    destination: file://$work/lake-off
    snapshot: false
    audit: {enabled: false}
    risk: {enabled: false}
  on:
    source: {url: $base, maxPollInterval: 1s}
    destination: file://$work/lake-on
    snapshot: false
    audit: {failOn: leak}
    risk: {minK: 1, action: fail}
YAML

field() { sed -n "s/^\s*$2: //p" "$1"; }
wall() { field "$1" 'Elapsed (wall clock) time (h:mm:ss or m:ss)' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
cpu() { awk -v u="$(field "$1" 'User time (seconds)')" -v s="$(field "$1" 'System time (seconds)')" 'BEGIN{print u+s}'; }
declare -A W C
for name in off on; do W[$name]=0; C[$name]=0; done
for r in $(seq "$ROUNDS"); do
  for name in off on; do
    /usr/bin/time -v "$work/fhirdeid" run -q -pipeline "$name" "$work/fhirdeid.yml" >"$work/run-$name.out" 2>"$work/run-$name.time" ||
      { echo "assure.sh: run $name failed" >&2; cat "$work/run-$name.out" "$work/run-$name.time" >&2; exit 1; }
    W[$name]=$(awk -v a="${W[$name]}" -v b="$(wall "$work/run-$name.time")" 'BEGIN{print a+b}')
    C[$name]=$(awk -v a="${C[$name]}" -v b="$(cpu "$work/run-$name.time")" 'BEGIN{print a+b}')
  done
done
res=$(sed -n 's/^run [^ ]* [a-z]*: \([0-9]*\) resources.*/\1/p' "$work/run-on.out")
run=$(cat "$work/lake-on/latest")

/usr/bin/time -v "$work/fhirdeid" version >/dev/null 2>"$work/version.time"
/usr/bin/time -v "$work/fhirdeid" risk "$work/lake-on/$run" >"$work/risk.out" 2>"$work/risk.time"
/usr/bin/time -v "$work/fhirdeid" risk "$DATA" >"$work/riskraw.out" 2>"$work/riskraw.time"
/usr/bin/time -v "$work/fhirdeid" audit "$work/lake-on/$run" --raw "$DATA" >"$work/audit.out" 2>"$work/audit.time" || true

mkdir -p bench/out
report="bench/out/assure-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "fhirdeid privacy checks benchmark $(date -u +%FT%TZ) on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(go version | cut -d' ' -f3)"
  echo "data: $DATA, $res resources; $ROUNDS rounds of each, alternating"
  printf "%-34s %10s %10s\n" "" wall-s cpu-s
  printf "%-34s %10.2f %10.2f\n" "fhirdeid run, checks off" "${W[off]}" "${C[off]}"
  printf "%-34s %10.2f %10.2f\n" "fhirdeid run, audit + risk on" "${W[on]}" "${C[on]}"
  echo "cost of the checks: wall $(awk -v a="${W[on]}" -v b="${W[off]}" 'BEGIN{printf "%+.1f %%", 100*(a-b)/b}'), CPU $(awk -v a="${C[on]}" -v b="${C[off]}" 'BEGIN{printf "%+.1f %%", 100*(a-b)/b}')"
  grep -E '^(audit|risk):' "$work/run-on.out" || true
  echo "output files scanned while written / read again: $(grep -o '"filesScannedInStream": *[0-9]*' "$work/lake-on/$run/report.json" | grep -o '[0-9]*$' || echo 0) / $(grep -o '"filesScannedAgain": *[0-9]*' "$work/lake-on/$run/report.json" | grep -o '[0-9]*$' || echo 0)"
  printf "fhirdeid version (the binary alone): peak RSS %.1f MB\n" "$(awk -v k="$(field "$work/version.time" 'Maximum resident set size (kbytes)')" 'BEGIN{print k/1024}')"
  printf "fhirdeid risk (de-identified run): peak RSS %.1f MB, %.2f s\n" "$(awk -v k="$(field "$work/risk.time" 'Maximum resident set size (kbytes)')" 'BEGIN{print k/1024}')" "$(wall "$work/risk.time")"
  printf "fhirdeid risk (raw data):          peak RSS %.1f MB, %.2f s\n" "$(awk -v k="$(field "$work/riskraw.time" 'Maximum resident set size (kbytes)')" 'BEGIN{print k/1024}')" "$(wall "$work/riskraw.time")"
  printf "fhirdeid audit (run vs raw data):  peak RSS %.1f MB, %.2f s, %s\n" "$(awk -v k="$(field "$work/audit.time" 'Maximum resident set size (kbytes)')" 'BEGIN{print k/1024}')" "$(wall "$work/audit.time")" "$(grep -E '^leaks' "$work/audit.out" | tr -s ' ')"
} | tee "$report"
