#!/bin/bash
# moe_direct.sh GEN_MOE DSAVE_MOE STSHARD WORKDIR NP -- MPIEXEC [ARGS...]
#
# The direct save of gen_moe's model (dsave_moe: 1500 tiny tensors, rank r
# holding block r of each) on NP ranks: checked value by value, and equal
# file for file to `stshard consolidate` (on 2 ranks) of gen_moe's NP rank
# files.  A second save into the same directory must fail on every rank
# (exit 1, "exist" in the message) and leave the first output as it was.
set -euo pipefail
gen=$1 dsave=$2 stshard=$3 work=$4 np=$5
shift 6
mpi=("$@")
tensors=1500
rm -rf "$work"
mkdir -p "$work"
"${mpi[@]}" -n "$np" "$dsave" "$work/direct" $tensors
"$gen" --check "$work/direct" "$np" $tensors
"$gen" "$work/in" "$np" $tensors
"${mpi[@]}" -n 2 "$stshard" consolidate "$work/in" "$work/cons" >/dev/null
diff <(cd "$work/direct" && ls) <(cd "$work/cons" && ls) ||
    { echo "FAIL: the direct save and consolidate made different files"; exit 1; }
for f in "$work/cons"/*; do
    cmp "$f" "$work/direct/$(basename "$f")"
done
sum=$(cd "$work/direct" && cat ./* | md5sum)
if "${mpi[@]}" -n "$np" "$dsave" "$work/direct" $tensors --seed 1 >"$work/again.out" 2>&1; then
    echo "FAIL: a second save over the output succeeded"; exit 1
fi
grep -q "exist" "$work/again.out" || { echo "FAIL: no 'exist' in:"; cat "$work/again.out"; exit 1; }
[ "$(cd "$work/direct" && cat ./* | md5sum)" = "$sum" ] ||
    { echo "FAIL: the failed save changed the output"; exit 1; }
rm -rf "$work"
echo "moe_direct: ok ($np ranks)"
