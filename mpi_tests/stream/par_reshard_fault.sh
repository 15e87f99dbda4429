#!/bin/sh
# par_reshard_fault.sh DIR STSHARD LAUNCHER NPFLAG [PREFLAGS...]
#
# A failure in the middle of a streaming reshard, on one rank only, stops
# every rank (no hang: the ctest timeout is the watchdog), exits with the
# I/O status 3 on the agreed error, and publishes nothing: OUTDIR holds no
# rank file and no temporary file.  Injected (STSHARD_FAULT, fault-injection
# builds) into rank 1's 5th MPI-IO write (a put, after its header) and its
# 6th MPI-IO read (a round's read).
set -eu
dir=$1 stshard=$2 launcher=$3 npflag=$4
shift 4
pre="$*"
. "$(dirname "$0")/../support/launch.sh"
rm -rf "$dir"
mkdir -p "$dir"
launch 2 "$stshard" save "$dir/in" --model mixed:8MiB --strategy tp --seed 3
for spec in point=write,rank=1,hit=5 point=read,rank=1,hit=6; do
    rm -rf "$dir/out"
    set +e
    STSHARD_FAULT=$spec launch 3 "$stshard" reshard "$dir/in" "$dir/out" --batch 64KiB \
        >"$dir/log" 2>&1
    status=$?
    set -e
    cat "$dir/log"
    [ "$status" = 3 ] || { echo "FAIL: $spec: exit status $status, expected 3"; exit 1; }
    grep -q "rank 1" "$dir/log" || { echo "FAIL: $spec: the message does not name rank 1"; exit 1; }
    left=$(find "$dir/out" -type f 2>/dev/null | wc -l)
    [ "$left" = 0 ] || { echo "FAIL: $spec: $left files left in OUTDIR"; find "$dir/out"; exit 1; }
done
rm -rf "$dir"
