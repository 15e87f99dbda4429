#!/bin/sh
# par_load.sh DIR NSAVE MLOAD STRATEGY STSHARD LAUNCHER NPFLAG [PREFLAGS...]
#
# Saves a synthetic model with `stshard save` on NSAVE ranks (seed 7), then
#  - loads it on MLOAD ranks with STRATEGY and --check-seed 7: every element
#    must match the generator, and bytes read must equal bytes needed;
#  - loads it with --check-seed 8: must fail with status 1 and DataMismatch;
#  - reshards it to MLOAD ranks and loads the result on NSAVE ranks with
#    --check-seed 7: resharding must keep every element.
set -eu
dir=$1 nsave=$2 mload=$3 strategy=$4 stshard=$5 launcher=$6 npflag=$7
shift 7
pre="$*"
. "$(dirname "$0")/../support/launch.sh"
rm -rf "$dir" "$dir.resharded"
launch "$nsave" "$stshard" save "$dir" --model mixed:3MiB --strategy tp --dtype BF16 --seed 7
out=$(launch "$mload" "$stshard" load "$dir" --strategy "$strategy" --check-seed 7 \
    --compare-whole --batch 256KiB --json)
echo "$out"
echo "$out" | grep -q '"mismatches": 0,'
needed=$(echo "$out" | sed 's/.*"bytes_needed": \([0-9]*\).*/\1/')
read=$(echo "$out" | sed 's/.*"bytes_read": \([0-9]*\).*/\1/')
[ "$needed" -gt 0 ] && [ "$needed" = "$read" ] || { echo "FAIL: read $read for $needed"; exit 1; }
set +e
bad=$(launch "$mload" "$stshard" load "$dir" --strategy "$strategy" --check-seed 8 2>&1)
status=$?
set -e
echo "$bad" | tail -3
[ "$status" = 1 ] || { echo "FAIL: wrong seed gave status $status, expected 1"; exit 1; }
echo "$bad" | grep -q "DataMismatch" || { echo "FAIL: no DataMismatch message"; exit 1; }
launch "$mload" "$stshard" reshard "$dir" "$dir.resharded" --strategy "$strategy"
launch "$nsave" "$stshard" load "$dir.resharded" --check-seed 7 --batch 100KiB | tee "$dir.log"
grep -q ", 0 differ" "$dir.log"
