#!/usr/bin/env bash
# Benchmark of `fhirdeid export`: exports a data set from a local
# `fhirdeid bulkserver` over loopback and reports the client's throughput
# (MB/s of uncompressed NDJSON), CPU seconds and peak RSS (/usr/bin/time -v).
#
# Usage: bench/export.sh [DATA_DIR] [extra export flags...]
# Default data: ../shared/data/synthea-1000-clone (381,066 resources, 480 MB raw).
# The server runs in passthrough mode (files served as stored, gzip on the
# wire) so that the figures are the client's; pass PASSTHROUGH=0 to make the
# server split files into parts of PART_SIZE resources instead.
# Results go to bench/out/export-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/synthea-1000-clone}
shift || true
PART_SIZE=${PART_SIZE:-20000}
PASSTHROUGH=${PASSTHROUGH:-1}
CONCURRENCY=${CONCURRENCY:-4}
[ -d "$DATA" ] || { echo "export.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "export.sh: /usr/bin/time is needed for CPU and RSS figures" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill "${srv_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid

srv_flags=(--data "$DATA" --polls 1 --retry-after 1 --part-size "$PART_SIZE")
[ "$PASSTHROUGH" = 1 ] && srv_flags+=(--passthrough)
"$work/fhirdeid" bulkserver "${srv_flags[@]}" >"$work/server.out" 2>"$work/server.err" &
srv_pid=$!
for _ in $(seq 50); do grep -q "FHIR base" "$work/server.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^bulkserver: FHIR base //p' "$work/server.out")
[ -n "$base" ] || { echo "export.sh: server did not start" >&2; cat "$work/server.err" >&2; exit 1; }

/usr/bin/time -v "$work/fhirdeid" export --url "$base" --out "$work/out" --quiet --min-wait 200ms \
  --concurrency "$CONCURRENCY" "$@" >"$work/export.out" 2>"$work/time.txt"

summary=$(cat "$work/export.out")
user=$(sed -n 's/^\s*User time (seconds): //p' "$work/time.txt")
sys=$(sed -n 's/^\s*System time (seconds): //p' "$work/time.txt")
wall=$(sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt")
rss_kb=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$work/time.txt")
bytes=$(echo "$summary" | sed -n 's/.*downloaded [0-9]* files, \([0-9.]*\) MB NDJSON in \([0-9.]*\)s.*/\1 \2/p')
mb=${bytes% *}; secs=${bytes#* }
cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
mbps=$(awk -v m="$mb" -v s="$secs" 'BEGIN{ if (s>0) printf "%.1f", m/s; else print "n/a"}')
gz=$(du -sb "$work/out" | cut -f1)
mkdir -p bench/out
report="bench/out/export-$(date -u +%Y%m%dT%H%M%SZ).txt"
{
  echo "fhirdeid export benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(go version | cut -d' ' -f3)"
  echo "data: $DATA (passthrough=$PASSTHROUGH part-size=$PART_SIZE) concurrency=$CONCURRENCY"
  echo "client: $summary"
  echo "download phase: $mb MB uncompressed NDJSON in ${secs}s = $mbps MB/s"
  echo "client CPU: ${cpu}s (user $user, sys $sys); wall (incl. server preparation and polls) $wall"
  echo "client peak RSS: $((rss_kb / 1024)) MiB ($rss_kb kB)"
  echo "stored: $gz bytes gzip"
} | tee "$report"
