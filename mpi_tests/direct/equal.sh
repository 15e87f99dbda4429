#!/bin/sh
# equal.sh STSHARD WORKDIR NP MODEL STRATEGY DTYPE [SAVE OPTIONS...] -- LAUNCHER...
#
# The three ways to a Hugging Face checkpoint give the same bytes:
#   B  `stshard save A --consolidate B --keep-shards` (rank files in A, kept)
#   C  `stshard save C --direct` (no rank files)
#   D  `stshard consolidate A D` on the kept rank files, with 3 ranks
# Every file of B (model files and index) must exist in C and D and be equal
# byte for byte, and C and D must hold nothing else.  Also: without
# --keep-shards the rank files and the directory the save made are removed;
# the direct directory holds no rank file and no temporary; `stshard verify`
# passes on C.  SAVE OPTIONS go to both saves and to the consolidate run
# (output options such as --layout, --align, --max-file-size).  The option
# --reference-split SIZE first saves a checkpoint R split at SIZE and then
# stands for --reference R: a mapping that both the rank files and the
# output follow.
set -u
stshard=$1 work=$2 np=$3 model=$4 strategy=$5 dtype=$6
shift 6
opts="" split=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    if [ "$1" = "--reference-split" ]; then
        split=$2
        opts="$opts --reference $work/R"
        shift 2
        continue
    fi
    opts="$opts $1"
    shift
done
[ $# -gt 0 ] && shift
mpi="$*"
fail=0
run() { # run WHAT COMMAND...: must exit 0
    what=$1
    shift
    echo "+ $*"
    if ! "$@" >"$work/out.txt" 2>&1; then
        echo "FAIL: $what"
        cat "$work/out.txt"
        fail=1
    fi
}
listing() { (cd "$1" && ls -A | sort); }

rm -rf "$work" && mkdir -p "$work" || exit 1
save="$stshard save --model $model --strategy $strategy --dtype $dtype --seed 3"
[ -n "$split" ] && run reference $mpi -n 2 $save "$work/R" --direct --max-file-size "$split"
# shellcheck disable=SC2086
run two-step $mpi -n "$np" $save "$work/A" --consolidate "$work/B" --keep-shards $opts
# shellcheck disable=SC2086
run direct $mpi -n "$np" $save "$work/C" --direct $opts --json
grep -q '"mode": "direct"' "$work/out.txt" || { echo "FAIL: no direct summary"; cat "$work/out.txt"; fail=1; }
# shellcheck disable=SC2086
run consolidate $mpi -n 3 "$stshard" consolidate "$work/A" "$work/D" $opts
# shellcheck disable=SC2086
run removed $mpi -n "$np" $save "$work/E/shards" --consolidate "$work/F" $opts
[ "$fail" = 0 ] || exit 1

ls "$work/A"/shard-*-model-*-of-*.safetensors >/dev/null 2>&1 ||
    { echo "FAIL: --keep-shards left no rank file"; fail=1; }
[ -e "$work/E/shards" ] && { echo "FAIL: rank files (or their directory) not removed:"; ls -la "$work/E/shards"; fail=1; }
n=0
for f in "$work/B"/*; do
    name=$(basename "$f")
    n=$((n + 1))
    for other in C D F; do
        cmp "$f" "$work/$other/$name" || { echo "FAIL: $other/$name differs from B/$name"; fail=1; }
    done
done
[ -f "$work/B/model.safetensors.index.json" ] || { echo "FAIL: no index in B"; fail=1; }
for other in C D F; do
    if [ "$(listing "$work/B")" != "$(listing "$work/$other")" ]; then
        echo "FAIL: $other holds other files than B:"
        listing "$work/$other"
        fail=1
    fi
done
run verify "$stshard" verify "$work/C"
echo "$n files compared (np=$np $model $strategy $dtype$opts)"
[ "$fail" = 0 ] && rm -rf "$work"
exit $fail
