#!/bin/sh
# par_reshard_mem.sh DIR STSHARD LAUNCHER NPFLAG [PREFLAGS...]
#
# `stshard reshard` runs in memory bounded by --batch, not by the share:
#  - saves llama:256MiB on 2 ranks (seed 7), reshards it on 2 ranks with
#    --batch 8MiB (rows, then tp, which replicates the norms), and checks each
#    time that the largest peak RSS of a rank (max_vmhwm_kib of --json) is
#    below half of a rank's share (128 MiB) plus 64 MiB: a reshard that held
#    its share, as before the streaming writer, cannot pass;
#  - loads both results with --check-seed 7: every element kept.
set -eu
dir=$1 stshard=$2 launcher=$3 npflag=$4
shift 4
pre="$*"
. "$(dirname "$0")/../support/launch.sh"
field() { echo "$1" | sed "s/.*\"$2\": \([0-9]*\).*/\1/"; }
rm -rf "$dir"
mkdir -p "$dir"
launch 2 "$stshard" save "$dir/in" --model llama:256MiB --strategy tp --seed 7
for strategy in row tp; do
    out=$(launch 2 "$stshard" reshard "$dir/in" "$dir/$strategy" --strategy "$strategy" \
        --batch 8MiB --json)
    echo "$out"
    rss=$(field "$out" max_vmhwm_kib)
    written=$(field "$out" bytes_written)
    share_kib=$((written / 2 / 1024))
    limit=$((share_kib / 2 + 65536))
    echo "$strategy: peak RSS $rss KiB, share $share_kib KiB, limit $limit KiB"
    [ "$share_kib" -gt 100000 ] || { echo "FAIL: share of $share_kib KiB is too small"; exit 1; }
    [ "$rss" -gt 0 ] && [ "$rss" -lt "$limit" ] ||
        { echo "FAIL: $strategy: peak RSS $rss KiB is not below $limit KiB"; exit 1; }
    launch 2 "$stshard" load "$dir/$strategy" --strategy "$strategy" --check-seed 7 \
        --batch 8MiB | tee "$dir/$strategy.log"
    grep -q ", 0 differ" "$dir/$strategy.log"
done
rm -rf "$dir"
