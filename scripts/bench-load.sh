#!/usr/bin/env bash
# bench-load.sh - offset-read loading (`stshard load`) against reading the
# whole files, as the reference design's reader does, in the same run.
#
# Usage: scripts/bench-load.sh [-m MODEL] [-s RANKS] [-S STRATEGY] [-n "M..."] [-t "S..."]
#                              [-x "MODE..."] [-r REPEATS] [-b BATCH] [-d DIR] [-D]
#   -m MODEL     synthetic model saved first (default llama:2GiB)
#   -s RANKS     ranks of the save (default 4)
#   -S STRATEGY  strategy of the save (default tp: a tensor-parallel training checkpoint)
#   -n "M..."    load rank counts (default "1 2 4")
#   -t "S..."    load strategies (default "row col")
#   -x "MODE..." two-phase read modes, `stshard load --exchange` (default "auto off")
#   -r REPEATS   passes per configuration; medians are reported (default 5)
#   -b BATCH     bytes per rank per read round (default 64MiB)
#   -d DIR       where the checkpoint lives (default /dev/shm)
#   -D           drop the page cache before every timed pass (root; for a disk DIR)
# Env: STSHARD (default build/src/cli/stshard), MPIEXEC (default mpirun).
#
# Each configuration is one `stshard load --compare-whole --repeat R` run.  In
# every repetition each rank first loads its 1/M share with offset reads
# (timed: the collective read rounds; the buffer is faulted in before), then
# reads whole, in 64 MiB reads, every file its share touches (timed the same
# way).  "read/share" is the worst rank's kernel-counted bytes (/proc/self/io
# rchar) over the bytes of its share.  GiB/s: share bytes / time for the load,
# file bytes / time for the whole-file reads; "whole s / load s" is how much
# sooner the offset load delivers the share.  Without -D the data is in the
# page cache (written just before), so both sides measure the software path,
# not a disk.
set -euo pipefail
cd "$(dirname "$0")/.."

model=llama:2GiB
save_ranks=4
save_strategy=tp
load_ranks="1 2 4"
strategies="row col"
modes="auto off"
drop=
repeats=5
batch=64MiB
dir=/dev/shm
while getopts "m:s:S:n:t:x:r:b:d:Dh" opt; do
    case $opt in
    m) model=$OPTARG ;;
    s) save_ranks=$OPTARG ;;
    S) save_strategy=$OPTARG ;;
    n) load_ranks=$OPTARG ;;
    t) strategies=$OPTARG ;;
    x) modes=$OPTARG ;;
    D) drop=--drop-caches ;;
    r) repeats=$OPTARG ;;
    b) batch=$OPTARG ;;
    d) dir=$OPTARG ;;
    *) sed -n '2,31p' "$0"; exit 2 ;;
    esac
done
STSHARD=${STSHARD:-build/src/cli/stshard}
MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LC_ALL=C
[ -x "$STSHARD" ] || { echo "no stshard binary at $STSHARD (set STSHARD)" >&2; exit 2; }

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p"; }

work=$dir/stshard-bench-load.$$
trap 'rm -rf "$work"' EXIT
echo "model $model saved by $save_ranks ranks ($save_strategy) in $dir; $repeats passes each;" \
    "$(nproc) cores; $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)${drop:+; page cache dropped before each pass}"
echo "stshard: $STSHARD; $($MPIEXEC --version 2>/dev/null | head -1)"
"$MPIEXEC" -n "$save_ranks" --oversubscribe "$STSHARD" save "$work" --model "$model" \
    --strategy "$save_strategy" --seed 1 >/dev/null
echo "checkpoint: $(du -sh "$work" | cut -f1) in $(ls "$work" | wc -l) rank files"
echo
echo "| ranks | strategy | exchange | share/rank | read/share (worst rank) | exchanged | load s |" \
    "load GiB/s | whole-file bytes | whole s | whole GiB/s | load/whole GiB/s | whole s / load s |" \
    "peak RSS/rank |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for m in $load_ranks; do
    for s in $strategies; do
        for x in $modes; do
            # shellcheck disable=SC2086
            out=$("$MPIEXEC" -n "$m" --oversubscribe "$STSHARD" load "$work" --strategy "$s" \
                --batch "$batch" --exchange "$x" --compare-whole --repeat "$repeats" $drop --json)
            needed=$(echo "$out" | field bytes_needed | head -1)
            recv=$(echo "$out" | field bytes_received | head -1)
            ratio=$(echo "$out" | field worst_rank_read_ratio | sort -g | tail -1)
            ls_=$(echo "$out" | field seconds | median)
            lg=$(echo "$out" | field gib_per_s | median)
            wb=$(echo "$out" | field whole_bytes_read | head -1)
            ws=$(echo "$out" | field whole_seconds | median)
            wg=$(echo "$out" | field whole_gib_per_s | median)
            rss=$(echo "$out" | field max_vmhwm_kib | sort -g | tail -1)
            printf '| %s | %s | %s | %.0f MiB | %.4f | %.0f%% | %.3f | %.2f | %.2f GiB | %.3f | %.2f | %.2f | %.2f | %.0f MiB |\n' \
                "$m" "$s" "$x" "$(echo "$needed / $m / 1048576" | bc -l)" "$ratio" \
                "$(echo "100 * $recv / $needed" | bc -l)" "$ls_" "$lg" \
                "$(echo "$wb / 1073741824" | bc -l)" "$ws" "$wg" "$(echo "$lg / $wg" | bc -l)" \
                "$(echo "$ws / $ls_" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
        done
    done
done
