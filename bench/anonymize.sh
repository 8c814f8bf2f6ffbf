#!/usr/bin/env bash
# Benchmark of `fhirdeid anonymize` on a bulk export folder, in one run:
#   - the I/O floor: `zcat | gzip -1` of every file, two files at a time;
#   - an empty rule list (parse, type, serialize and compress only);
#   - the Microsoft sample configuration (r4-configuration-sample.json,
#     fixed keys) at the default number of workers, then at 1 and 2 workers;
#   - the built-in profiles (longitudinal, safe-harbor) with a fresh key
#     file, and any further configuration named in EXTRA_CONFIGS
#     ("name=path ...").
# Then a per-stage CPU profile (--cpuprofile) of the full configuration and
# of the longitudinal profile: the share of CPU time in reading and
# decompressing, parsing, typing, the rules (scrubbing among them), pruning,
# serialising, compressing, the lines of the scrub method's first pass
# (its reading is counted with the second pass's) and the garbage
# collector.
# Reports wall seconds, resources/s, MB/s of uncompressed NDJSON, CPU seconds
# and peak RSS (/usr/bin/time -v) for each, the 1-minute load average when
# each started (the machine may be shared: figures taken under load are not
# comparable with quiet ones), and the ratios the targets are stated in:
# full configuration / zcat|gzip (target <= 1.2) and / empty rules (<= 1.5),
# and the same for each profile and extra configuration.
#
# REPEAT (default 3) is the number of interleaved rounds: every figure is
# the median of its rounds, as the speed of a shared machine drifts by about
# 10 % from minute to minute.
#
# ANON_ARGS adds flags to every fhirdeid anonymize run (e.g. "--gzip-level 1",
# the level of the zcat | gzip -1 pass; the default is 2).
#
# Usage: bench/anonymize.sh [DATA_DIR]
# Default data: ../shared/data/synthea-1000-clone (381,066 resources, 480 MB raw).
# Results go to bench/out/anonymize-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${FHIRDEID_SHARED:-../shared}
DATA=${1:-$SHARED/data/synthea-1000-clone}
CONFIG=${CONFIG:-$SHARED/conformance/ms-anonymizer/FHIR/src/Microsoft.Health.Fhir.Anonymizer.R4.FunctionalTests/r4-configuration-sample.json}
EXTRA_CONFIGS=${EXTRA_CONFIGS:-}
read -r -a anon_args <<<"${ANON_ARGS:-}"
[ -d "$DATA" ] || { echo "anonymize.sh: data directory $DATA not found (it is in ../shared)" >&2; exit 1; }
[ -f "$CONFIG" ] || { echo "anonymize.sh: configuration $CONFIG not found" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "anonymize.sh: /usr/bin/time is needed for CPU and RSS figures" >&2; exit 1; }
ls "$DATA"/*.ndjson.gz >/dev/null 2>&1 || { echo "anonymize.sh: no .ndjson.gz files in $DATA" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/fhirdeid" ./cmd/fhirdeid
echo '{"fhirVersion":"R4","fhirPathRules":[],"parameters":{"cryptoHashKey":"bench","dateShiftKey":"bench"}}' >"$work/empty.json"
raw_bytes=$(for f in "$DATA"/*.ndjson.gz; do zcat "$f"; done | wc -c)

load() { cut -d' ' -f1 /proc/loadavg; }
elapsed() { sed -n 's/^\s*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$1" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
cpu() { awk -v u="$(sed -n 's/^\s*User time (seconds): //p' "$1")" -v s="$(sed -n 's/^\s*System time (seconds): //p' "$1")" 'BEGIN{printf "%.1f", u+s}'; }
rss() { sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$1"; }

# zcatgzip: prints "seconds cpu rss_kb load"
zcatgzip() {
  local l
  l=$(load)
  mkdir -p "$work/zg"
  # shellcheck disable=SC2016
  /usr/bin/time -v sh -c 'ls "$1"/*.ndjson.gz | xargs -P 2 -I{} sh -c "zcat {} | gzip -1 > $2/\$(basename {})"' sh "$DATA" "$work/zg" \
    2>"$work/zg.txt" >/dev/null
  rm -rf "$work/zg"
  echo "$(elapsed "$work/zg.txt") $(cpu "$work/zg.txt") $(rss "$work/zg.txt") $l"
}

# measure NAME ARGS...: prints "resources seconds cpu rss_kb load"
measure() {
  local name=$1 l line res
  shift
  l=$(load)
  /usr/bin/time -v "$work/fhirdeid" anonymize -i "$DATA" -o "$work/out-$name" -b --today 2026-11-28 "${anon_args[@]}" "$@" \
    >/dev/null 2>"$work/$name.txt"
  line=$(grep -m1 'resources in' "$work/$name.txt")
  res=$(echo "$line" | sed -n 's/^\([0-9]*\) resources in.*/\1/p')
  rm -rf "$work/out-$name"
  echo "$res $(elapsed "$work/$name.txt") $(cpu "$work/$name.txt") $(rss "$work/$name.txt") $l"
}

# Warm the page cache and the binary.
"$work/fhirdeid" anonymize -i "$DATA" -o "$work/warm" -b -c "$work/empty.json" >/dev/null 2>&1 || true
rm -rf "$work/warm"

# The passes run REPEAT times (default 3), interleaved (each round runs every
# pass once), so that a slow minute of a shared machine falls on every pass
# alike; each figure is the median of its rounds (peak RSS: the highest).
REPEAT=${REPEAT:-3}
"$work/fhirdeid" keys init "$work/keys.json" >/dev/null 2>&1 || rm -f "$work/keys.json"
passes=(zcat empty full w1 w2)
[ -f "$work/keys.json" ] && passes+=(p-longitudinal p-safe-harbor)
for kv in $EXTRA_CONFIGS; do passes+=("x-${kv%%=*}"); done
declare -A runs
for ((round = 1; round <= REPEAT; round++)); do
  for p in "${passes[@]}"; do
    case $p in
    zcat) r=$(zcatgzip) ;;
    empty) r=$(measure empty -c "$work/empty.json") ;;
    full) r=$(measure full -c "$CONFIG") ;;
    w1) r=$(measure w1 -c "$CONFIG" --workers 1) ;;
    w2) r=$(measure w2 -c "$CONFIG" --workers 2) ;;
    p-*) r=$(measure "$p" --profile "${p#p-}" --keys "$work/keys.json") ;;
    x-*)
      for kv in $EXTRA_CONFIGS; do [ "x-${kv%%=*}" = "$p" ] && r=$(measure "$p" -c "${kv#*=}"); done ;;
    esac
    runs[$p]+="$r"$'\n'
  done
done
# median PASS: "resources seconds cpu rss_kb load" of PASS's rounds (zcat's
# rows have no resources column: one is added).
median() {
  local rows=${runs[$1]}
  [ "$1" = zcat ] && rows=$(printf '%s' "$rows" | sed '/./s/^/0 /')
  printf '%s' "$rows" | awk 'NF { r[NR]=$1; s[NR]=$2; c[NR]=$3; if ($4 > k) k=$4; l[NR]=$5; n=NR }
    function med(a,   i, j, t, m) { m = n; for (i = 1; i <= m; i++) b[i] = a[i]
      for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
      return m % 2 ? b[(m+1)/2] : (b[m/2] + b[m/2+1]) / 2 }
    END { printf "%s %s %s %s %s\n", r[1], med(s), med(c), k, l[1] }'
}
read -r _ zs zc zk zl < <(median zcat)
read -r er es ec ek el < <(median empty)
read -r fr fs fc fk fl < <(median full)
read -r w1r w1s w1c w1k w1l < <(median w1)
read -r w2r w2s w2c w2k w2l < <(median w2)
extra=()
for p in "${passes[@]}"; do
  case $p in
  p-*) extra+=("profile:${p#p-} $(median "$p")") ;;
  x-*) extra+=("${p#x-} $(median "$p")") ;;
  esac
done

# stages NAME ARGS...: the CPU seconds (cumulative, in profile samples) of
# each stage of one run with --cpuprofile, and their share of all samples.
stages() {
  local name=$1
  shift
  "$work/fhirdeid" anonymize -i "$DATA" -o "$work/out-$name" -b --today 2026-11-28 "${anon_args[@]}" "$@" \
    --cpuprofile "$work/$name.prof" >/dev/null 2>&1
  rm -rf "$work/out-$name"
  go tool pprof -top -cum -nodecount=100000 "$work/fhirdeid" "$work/$name.prof" 2>/dev/null | awk -v name="$name" '
    function sec(v) { if (v ~ /ms$/) return substr(v, 1, length(v)-2)/1000; if (v ~ /us$/) return substr(v, 1, length(v)-2)/1e6; return substr(v, 1, length(v)-1) + 0 }
    /^Duration:/ { for (i = 1; i <= NF; i++) if ($i == "samples") total = sec($(i+2)) }
    NF >= 6 { cum[$6] = sec($4) }
    END {
      n = split("read+gunzip:fhirdeid/internal/ndjson.readBatches parse:fhirdeid/jsontree.(*Parser).Parse typing:fhirdeid/fhir/typed.AnnotateWith rules:fhirdeid/anonymize.(*run).resource scrub(in-rules):fhirdeid/anonymize.(*run).scrubNode fhirpath(in-rules):fhirdeid/fhirpath.(*Expression).run prune:fhirdeid/anonymize.(*pruner).prune serialise:fhirdeid/jsontree.(*Node).AppendJSON gzip:fhirdeid/internal/ndjson.(*GzipMembers).Encode first-pass-lines:main.(*anonymizer).collectFile.func1 gc:runtime.gcBgMarkWorker", st, " ")
      printf "per-stage CPU of %s (%.2f s of profile samples):", name, total
      for (i = 1; i <= n; i++) { k = index(st[i], ":"); f = substr(st[i], k+1); share = total > 0 ? 100*cum[f]/total : 0; printf " %s %.2f s (%.0f%%)", substr(st[i], 1, k-1), cum[f], share }
      printf "\n"
    }'
}
stage_full=$(stages full-profile -c "$CONFIG")
stage_long=""
[ -f "$work/keys.json" ] && stage_long=$(stages longitudinal-profile --profile longitudinal --keys "$work/keys.json")

mkdir -p bench/out
report="bench/out/anonymize-$(date -u +%Y%m%dT%H%M%SZ).txt"
row() { # name resources seconds cpu rss_kb load
  printf "%-32s %9s %8.2f %11.0f %8.1f %7s %9.0f %6s\n" "$1" "$2" "$3" "$(awk -v r="$2" -v s="$3" 'BEGIN{print r/s}')" \
    "$(awk -v b="$raw_bytes" -v s="$3" 'BEGIN{print b/s/1e6}')" "$4" "$(awk -v k="$5" 'BEGIN{print k/1024}')" "$6"
}
{
  echo "fhirdeid anonymize benchmark $(date -u +%FT%TZ) on $(nproc) cores, $(go version | cut -d' ' -f3)"
  echo "data: $DATA ($fr resources, $((raw_bytes / 1000000)) MB uncompressed); read and written as .ndjson.gz${ANON_ARGS:+; fhirdeid flags: $ANON_ARGS}"
  echo "load: the 1-minute load average when each pass started (first round); figures under load are not comparable with quiet ones"
  echo "each figure: the median of $REPEAT interleaved rounds (peak RSS: the highest)"
  printf "%-32s %9s %8s %11s %8s %7s %9s %6s\n" pass resources seconds resources/s MB/s cpu-s peakRSS-MB load
  row "zcat | gzip -1 (2 at a time)" "$fr" "$zs" "$zc" "$zk" "$zl"
  row "empty rules" "$er" "$es" "$ec" "$ek" "$el"
  row "r4-configuration-sample" "$fr" "$fs" "$fc" "$fk" "$fl"
  row "r4-configuration-sample 1 worker" "$w1r" "$w1s" "$w1c" "$w1k" "$w1l"
  row "r4-configuration-sample 2 workers" "$w2r" "$w2s" "$w2c" "$w2k" "$w2l"
  for x in "${extra[@]}"; do
    # shellcheck disable=SC2086
    row $x
  done
  echo "full configuration / zcat|gzip -1: $(awk -v a="$fs" -v b="$zs" 'BEGIN{printf "%.2f", a/b}')x (target <= 1.2)"
  echo "full configuration / empty rules:  $(awk -v a="$fs" -v b="$es" 'BEGIN{printf "%.2f", a/b}')x (target <= 1.5)"
  echo "the same in CPU seconds, steadier on a loaded machine: $(awk -v a="$fc" -v b="$zc" 'BEGIN{printf "%.2f", a/b}')x and $(awk -v a="$fc" -v b="$ec" 'BEGIN{printf "%.2f", a/b}')x"
  for x in "${extra[@]}"; do
    read -r xn _ xs xc _ _ <<<"$x"
    echo "$xn / zcat|gzip -1: $(awk -v a="$xs" -v b="$zs" 'BEGIN{printf "%.2f", a/b}')x (target <= 1.2); / empty rules: $(awk -v a="$xs" -v b="$es" 'BEGIN{printf "%.2f", a/b}')x (target <= 1.5); in CPU seconds $(awk -v a="$xc" -v b="$zc" 'BEGIN{printf "%.2f", a/b}')x and $(awk -v a="$xc" -v b="$ec" 'BEGIN{printf "%.2f", a/b}')x"
  done
  echo "2 workers / 1 worker throughput:   $(awk -v a="$w1s" -v b="$w2s" 'BEGIN{printf "%.2f", a/b}')x"
  echo "peak RSS of the full configuration: $(awk -v k="$fk" 'BEGIN{printf "%.0f", k/1024}') MB (target < 256)"
  echo "$stage_full"
  [ -z "$stage_long" ] || echo "$stage_long"
} | tee "$report"
