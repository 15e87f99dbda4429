#!/bin/bash
# par_env_agree.sh DIR STSHARD LAUNCHER NPFLAG [PREFLAGS...]
#
# The library's environment switches reach only the ranks whose environment
# holds them (mpirun passes a variable to other hosts only with -x).  Rank 0's
# value must govern every rank: here each switch is set on ONE rank only
# (par_env_rank.sh), and every run must finish (no hang: the ctest timeout is
# the watchdog) with files byte-identical to a run without the switch.
#   STSHARD_DIRECT_STRIDED=view, STSHARD_DIRECT_ROUND=4096: a direct save of
#     column-sharded tensors (strided blocks: exchange or file views);
#   STSHARD_MPI_HINTS (malformed) for the direct save's collective opens;
#   STSHARD_COPY_RANGE=0 on rank 0 only, with the fault point cons.copy_range
#     armed on rank 1: rank 1 must follow rank 0 and never reach the
#     copy_file_range path (fault-injection builds; skipped otherwise).
set -euo pipefail
dir=$1 stshard=$2 launcher=$3 npflag=$4
shift 4
pre="$*"
# shellcheck source=../support/launch.sh
. "$(dirname "$0")/../support/launch.sh"
wrap=$(dirname "$0")/par_env_rank.sh
rm -rf "$dir"
mkdir -p "$dir"

same() {
    for f in "$1"/*; do
        cmp "$f" "$2/$(basename "$f")" || { echo "FAIL: $3: $(basename "$f") differs"; exit 1; }
    done
    [ "$(ls "$1" | wc -l)" = "$(ls "$2" | wc -l)" ] || { echo "FAIL: $3: file counts differ"; exit 1; }
}

save() {
    name=$1
    shift
    launch 3 "$@" "$stshard" save "$dir/$name" --model llama:1MiB --strategy col --direct \
        --buffer-size 64KiB --force
}

launch 3 "$stshard" save "$dir/ref" --model llama:1MiB --strategy col --direct --buffer-size 64KiB
for r in 0 1; do
    save "view_$r" "$wrap" "$r" STSHARD_DIRECT_STRIDED=view
    same "$dir/ref" "$dir/view_$r" "STSHARD_DIRECT_STRIDED on rank $r"
    save "round_$r" "$wrap" "$r" STSHARD_DIRECT_ROUND=4096
    same "$dir/ref" "$dir/round_$r" "STSHARD_DIRECT_ROUND on rank $r"
done
# The collective open of the direct mode's output files takes rank 0's STSHARD_MPI_HINTS:
# a list set (malformed, even) on rank 1 alone changes nothing ...
save hints_1 "$wrap" 1 STSHARD_MPI_HINTS=romio_cb_write
same "$dir/ref" "$dir/hints_1" "STSHARD_MPI_HINTS on rank 1"
# ... and a malformed list on rank 0 fails every rank alike, leaving no output.
set +e
save hints_0 "$wrap" 0 STSHARD_MPI_HINTS=romio_cb_write >"$dir/log" 2>&1
status=$?
set -e
cat "$dir/log"
[ "$status" != 0 ] || { echo "FAIL: a malformed STSHARD_MPI_HINTS on rank 0 was accepted"; exit 1; }
grep -q "STSHARD_MPI_HINTS" "$dir/log" || { echo "FAIL: the message does not name the variable"; exit 1; }
[ ! -e "$dir/hints_0/model.safetensors" ] || { echo "FAIL: output published"; exit 1; }

# Consolidate: rank files with row-sharded tensors (contiguous runs: the copy_file_range path).
launch 2 "$stshard" save "$dir/ranks" --model llama:1MiB --strategy row
launch 3 "$stshard" consolidate "$dir/ranks" "$dir/cons_ref"
if [ "${STS_FAULT_BUILD:-0}" = 1 ]; then
    STSHARD_FAULT=point=cons.copy_range,rank=1,code=io \
        launch 3 "$wrap" 0 STSHARD_COPY_RANGE=0 "$stshard" consolidate "$dir/ranks" "$dir/cons_0"
    same "$dir/cons_ref" "$dir/cons_0" "STSHARD_COPY_RANGE=0 on rank 0"
fi
launch 3 "$wrap" 1 STSHARD_COPY_RANGE=0 "$stshard" consolidate "$dir/ranks" "$dir/cons_1"
same "$dir/cons_ref" "$dir/cons_1" "STSHARD_COPY_RANGE=0 on rank 1"
rm -rf "$dir"
echo "par_env_agree: ok"
