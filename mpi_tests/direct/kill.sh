#!/bin/sh
# kill.sh STSHARD WORKDIR RANK -- LAUNCHER...
#
# A rank of a direct save is SIGKILLed by the fault switch (test builds) on
# its second data write, in the middle of the data phase.  The job must end
# (no hang), with a non-zero status, and no final-named file may appear in the
# output directory: a crashed save never publishes.  A plain save into the
# same directory then succeeds (left-over temporaries are hidden names that
# the next run replaces).
set -u
stshard=$1 work=$2 rank=$3
shift 3
[ "$1" = "--" ] && shift
fail=0
rm -rf "$work" && mkdir -p "$work" || exit 1
out=$work/hf
STSHARD_FAULT="point=write,rank=$rank,hit=2,action=kill" \
    "$@" -n 2 "$stshard" save "$out" --model llama:4MiB --strategy col --direct \
    >"$work/log" 2>&1
status=$?
[ "$status" != 0 ] || { echo "FAIL: the killed save exited 0"; fail=1; }
grep -q "fault injection: killing rank $rank" "$work/log" || { echo "FAIL: the switch did not fire"; cat "$work/log"; fail=1; }
if ls "$out" 2>/dev/null | grep -q '^model'; then
    echo "FAIL: final-named files after a crash:"
    ls -la "$out"
    fail=1
fi
"$@" -n 2 "$stshard" save "$out" --model llama:4MiB --strategy col --direct >"$work/log" 2>&1 ||
    { echo "FAIL: the save after the crash"; cat "$work/log"; fail=1; }
[ -f "$out/model.safetensors.index.json" ] || { echo "FAIL: no index after the second save"; fail=1; }
[ "$fail" = 0 ] && { echo "ok: killed rank $rank (status $status), nothing published"; rm -rf "$work"; }
exit $fail
