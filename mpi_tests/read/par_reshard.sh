#!/bin/sh
# par_reshard.sh SRC OUT M STRATEGY DIM FIXTURES.h5 CHECK STSHARD LAUNCHER NPFLAG [PREFLAGS...]
#
# Runs `stshard reshard SRC OUT --strategy STRATEGY [--dim DIM]` on M ranks
# (with a 1 KiB batch, so every tensor takes several collective rounds), checks
# that a second run into OUT refuses without --force, then checks OUT against
# the HDF5 reference tensors with par_reshard_check (2 ranks) and, when the
# tool has it, `stshard verify`.
set -eu
src=$1 out=$2 m=$3 strategy=$4 dim=$5 h5=$6 check=$7 stshard=$8 launcher=$9
shift 9
npflag=$1
shift
pre="$*" # launcher flags (no spaces inside any of them)
launch() {
    n=$1
    shift
    echo "+ $launcher $npflag $n $pre $*" >&2
    # shellcheck disable=SC2086
    "$launcher" "$npflag" "$n" $pre "$@"
}
dimopt=""
[ "$dim" != 0 ] && dimopt="--dim $dim"
rm -rf "$out"
# shellcheck disable=SC2086
launch "$m" "$stshard" reshard "$src" "$out" --strategy "$strategy" $dimopt --batch 1KiB
# shellcheck disable=SC2086
if launch 2 "$stshard" reshard "$src" "$out" --strategy "$strategy" $dimopt >/dev/null 2>&1; then
    echo "FAIL: a second reshard into the same OUTDIR must refuse without --force"
    exit 1
fi
launch 2 "$check" "$h5" "$out" "$m" "$strategy" "$dim"
if "$stshard" --help | grep -q "^  verify "; then
    "$stshard" verify "$out"
fi
