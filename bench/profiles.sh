#!/usr/bin/env bash
# Benchmark of the built-in profiles: `fhirdeid anonymize --profile
# safe-harbor` against `--profile longitudinal` (per-patient date shifting,
# the display keep rule), both with the same fresh key file, in one run on the
# same data. Reports resources/s, MB/s, CPU seconds and peak RSS
# (/usr/bin/time -v) of each, and the ratio of their throughputs.
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

# measure PROFILE: prints "resources seconds MB/s cpu rss_kb"
measure() {
  /usr/bin/time -v "$work/fhirdeid" anonymize -i "$DATA" -o "$work/out-$1" -b --profile "$1" --keys "$work/keys.json" \
    --today 2026-11-28 >/dev/null 2>"$work/$1.txt"
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
read -r r1 s1 m1 c1 k1 < <(measure safe-harbor)
read -r r2 s2 m2 c2 k2 < <(measure longitudinal)
mkdir -p bench/out
report="bench/out/profiles-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "fhirdeid profiles benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(go version | cut -d' ' -f3), load average before: $load"
  echo "data: $DATA ($r1 resources); files read and written as .ndjson.gz; same key file"
  printf "%-14s %10s %9s %12s %9s %9s %10s\n" profile resources seconds resources/s MB/s cpu-s peakRSS-MB
  printf "%-14s %10s %9.2f %12.0f %9s %9s %10.0f\n" safe-harbor "$r1" "$s1" "$(awk -v r="$r1" -v s="$s1" 'BEGIN{print r/s}')" "$m1" "$c1" "$(awk -v k="$k1" 'BEGIN{print k/1024}')"
  printf "%-14s %10s %9.2f %12.0f %9s %9s %10.0f\n" longitudinal "$r2" "$s2" "$(awk -v r="$r2" -v s="$s2" 'BEGIN{print r/s}')" "$m2" "$c2" "$(awk -v k="$k2" 'BEGIN{print k/1024}')"
  echo "longitudinal / safe-harbor throughput: $(awk -v a="$s1" -v b="$s2" 'BEGIN{printf "%.2f", a/b}') (CPU: $(awk -v a="$c2" -v b="$c1" 'BEGIN{printf "%.2f", a/b}')x)"
} | tee "$report"
