#!/usr/bin/env bash
# Benchmark of the built-in profiles: `fhirdeid anonymize --profile
# safe-harbor` against `--profile longitudinal` (per-patient date shifting,
# the display keep rule, free text scrubbed with the identifiers of a first
# pass over the input), and against the longitudinal profile with its scrub
# rules turned back into redact (the cost of scrubbing), all with the same
# fresh key file, in one run on the same data. Reports resources/s, MB/s,
# CPU seconds and peak RSS (/usr/bin/time -v) of each, and the ratios of
# their throughputs. The wall-clock time of `longitudinal` includes its
# first pass (reading every input file once more).
#
# Usage: bench/profiles.sh [DATA_DIR]
# Default data: ../shared/data/synthea-1000-clone (381,066 resources, 480 MB raw).
# Results go to bench/out/profiles-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FHIRDEID_SHARED:-../shared}
DATA=${1:-$SHARED/data/synthea-1000-clone}
[ -d "$DATA" ] || { echo "profiles.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "profiles.sh: /usr/bin/time is needed for CPU and RSS figures" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid
"$work/fhirdeid" keys init "$work/keys.json" 2>/dev/null

# The longitudinal profile without scrubbing: scrub rules become redact.
"$work/fhirdeid" config show --profile longitudinal |
  sed 's/"method": "scrub", "dates": "shift"/"method": "redact"/' >"$work/longitudinal-noscrub.json"
grep -q '"scrub"' "$work/longitudinal-noscrub.json" && { echo "profiles.sh: scrub rules left in longitudinal-noscrub.json" >&2; exit 1; }

# measure NAME ARGS...: prints "resources seconds MB/s cpu rss_kb"
measure() {
  local name=$1
  shift
  /usr/bin/time -v "$work/fhirdeid" anonymize -i "$DATA" -o "$work/out-$name" -b "$@" --keys "$work/keys.json" \
    --today 2026-11-28 >/dev/null 2>"$work/$name.txt"
  set -- "$name"
  local line res secs mbps user sys rss
  line=$(grep -m1 'resources in' "$work/$1.txt")
  res=$(echo "$line" | sed -n 's/^\([0-9]*\) resources in.*/\1/p')
  mbps=$(echo "$line" | sed -n 's/.* \([0-9.]*\) MB\/s$/\1/p')
  user=$(sed -n 's/^\s*User time (seconds): //p' "$work/$1.txt")
  sys=$(sed -n 's/^\s*System time (seconds): //p' "$work/$1.txt")
  secs=$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/$1.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$work/$1.txt")
  rm -rf "$work/out-$1"
  echo "$res $secs $mbps $(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.1f", u+s}') $rss"
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
read -r r1 s1 m1 c1 k1 < <(measure safe-harbor --profile safe-harbor)
read -r r2 s2 m2 c2 k2 < <(measure longitudinal --profile longitudinal)
read -r r3 s3 m3 c3 k3 < <(measure longitudinal-noscrub -c "$work/longitudinal-noscrub.json")
mkdir -p bench/out
report="bench/out/profiles-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "fhirdeid profiles benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(go version | cut -d' ' -f3), load average before: $load"
  echo "data: $DATA ($r1 resources); files read and written as .ndjson.gz; same key file"
  printf "%-20s %10s %9s %12s %9s %9s %10s\n" profile resources seconds resources/s MB/s cpu-s peakRSS-MB
  printf "%-20s %10s %9.2f %12.0f %9s %9s %10.0f\n" safe-harbor "$r1" "$s1" "$(awk -v r="$r1" -v s="$s1" 'BEGIN{print r/s}')" "$m1" "$c1" "$(awk -v k="$k1" 'BEGIN{print k/1024}')"
  printf "%-20s %10s %9.2f %12.0f %9s %9s %10.0f\n" longitudinal "$r2" "$s2" "$(awk -v r="$r2" -v s="$s2" 'BEGIN{print r/s}')" "$m2" "$c2" "$(awk -v k="$k2" 'BEGIN{print k/1024}')"
  printf "%-20s %10s %9.2f %12.0f %9s %9s %10.0f\n" longitudinal-noscrub "$r3" "$s3" "$(awk -v r="$r3" -v s="$s3" 'BEGIN{print r/s}')" "$m3" "$c3" "$(awk -v k="$k3" 'BEGIN{print k/1024}')"
  echo "longitudinal / safe-harbor throughput: $(awk -v a="$s1" -v b="$s2" 'BEGIN{printf "%.2f", a/b}') (CPU: $(awk -v a="$c2" -v b="$c1" 'BEGIN{printf "%.2f", a/b}')x)"
  echo "longitudinal / longitudinal-noscrub throughput: $(awk -v a="$s3" -v b="$s2" 'BEGIN{printf "%.2f", a/b}') (CPU: $(awk -v a="$c2" -v b="$c3" 'BEGIN{printf "%.2f", a/b}')x)"
} | tee "$report"
