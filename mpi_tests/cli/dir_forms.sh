#!/bin/bash
# dir_forms.sh WORK RANKS SINGLE INDEX CLI MPIEXEC [MPI-ARGS...]
#
# Every command that takes a checkpoint directory gives the same answer about
# it (docs/format.md, "What a checkpoint directory holds"):
#  - a Hugging Face checkpoint (model.safetensors, or an index and its model
#    files) beside rank files is AmbiguousInput (exit 1) for load, reshard,
#    consolidate, verify, mapping --reference and inspect alike;
#  - hidden entries (stshard temporaries, a hidden FIFO named like a rank
#    file, a hidden directory) are ignored by every one of them.
# RANKS, SINGLE and INDEX are generated fixtures; WORK is scratch space.
set -euo pipefail
work=$1 ranks=$2 single=$3 index=$4 cli=$5
shift 5
mpi=("$@" -n 2)
[ "${OMPI_ALLOW_RUN_AS_ROOT:-}" = 1 ] && mpi+=(--oversubscribe)
fails=0

# check NAME STATUS REGEX ANTI-REGEX -- COMMAND...: exit status and output.
check() {
    local name=$1 want=$2 re=$3 anti=$4 got=0 out
    shift 5
    out=$(timeout 120 "$@" 2>&1) || got=$?
    if [ "$got" != "$want" ] || ! grep -Eq -- "$re" <<<"$out" ||
        { [ -n "$anti" ] && grep -Eq -- "$anti" <<<"$out"; }; then
        echo "FAIL $name: exit $got (want $want), output must match /$re/${anti:+, not /$anti/}:"
        sed 's/^/    /' <<<"$out"
        fails=$((fails + 1))
    else
        echo "ok   $name: exit $got"
    fi
}

# every_command DIR STATUS REGEX: the six commands, one answer.
every_command() {
    local d=$1 st=$2 re=$3
    rm -rf "$d.out" "$d.cons"
    check "$d load" "$st" "$re" "" -- "${mpi[@]}" "$cli" load "$d"
    check "$d reshard" "$st" "$re" "" -- "${mpi[@]}" "$cli" reshard "$d" "$d.out"
    check "$d consolidate" "$st" "$re" "" -- "${mpi[@]}" "$cli" consolidate "$d" "$d.cons"
    check "$d verify" "$st" "$re" "" -- "$cli" verify "$d"
    check "$d mapping" "$st" "$re" "" -- "$cli" mapping --reference "$d"
    check "$d inspect" "$st" "$re" "" -- "$cli" inspect "$d"
}

# Hidden entries no command may open or count.
add_hidden_junk() {
    echo "not safetensors" >"$1/.model.safetensors.stshard-partial"
    echo "not safetensors" >"$1/.x.safetensors"
    cp "$single/model.safetensors" "$1/.model.safetensors.stshard-old"
    mkfifo "$1/.shard-00009-model-00001-of-00001.safetensors"
    mkdir "$1/.cache.safetensors"
}

rm -rf "$work"
mkdir -p "$work"
cd "$work"

mkdir single_and_ranks index_and_ranks ranks_hidden single_hidden
cp "$ranks"/*.safetensors "$single/model.safetensors" single_and_ranks/
cp "$ranks"/*.safetensors "$index"/* index_and_ranks/
amb="AmbiguousInput: .*ambiguous checkpoint directory: holds both a Hugging Face checkpoint"
every_command single_and_ranks 1 \
    "$amb \(model\.safetensors\) and rank files \(shard-00001-model-00001-of-00001\.safetensors and more\)"
every_command index_and_ranks 1 \
    "$amb \(model\.safetensors\.index\.json\) and rank files \(shard-00001-model-00001-of-00001\.safetensors and more\)"

cp "$ranks"/*.safetensors ranks_hidden/
add_hidden_junk ranks_hidden
rm -rf ranks_hidden.out ranks_hidden.cons
check "ranks_hidden load" 0 "5 tensors" "" -- "${mpi[@]}" "$cli" load ranks_hidden
check "ranks_hidden reshard" 0 "4 files -> 2 rank files" "" -- \
    "${mpi[@]}" "$cli" reshard ranks_hidden ranks_hidden.out
check "ranks_hidden consolidate" 0 "from 4 rank files" "" -- \
    "${mpi[@]}" "$cli" consolidate ranks_hidden ranks_hidden.cons
check "ranks_hidden verify" 0 "ranks_hidden: valid" "" -- "$cli" verify ranks_hidden
# Rank files alone are no reference, junk or not: the same NotFound as for clean rank files.
check "ranks_hidden mapping" 3 "NotFound: .*neither model.safetensors.index.json nor" "" -- \
    "$cli" mapping --reference ranks_hidden
check "ranks_hidden inspect" 0 "total: 4 files" "stshard-|\.x\.safetensors|\.cache|shard-00009" -- \
    "$cli" inspect ranks_hidden

cp "$single/model.safetensors" single_hidden/
add_hidden_junk single_hidden
check "single_hidden load" 0 "tensors" "" -- "${mpi[@]}" "$cli" load single_hidden
check "single_hidden verify" 0 "single_hidden: valid" "" -- "$cli" verify single_hidden
check "single_hidden mapping" 0 "\"model.mask\": 1" "" -- "$cli" mapping --reference single_hidden
check "single_hidden inspect" 0 "total: 1 file," "stshard-|\.x\.safetensors|\.cache|shard-00009" -- \
    "$cli" inspect single_hidden

if [ "$fails" -ne 0 ]; then
    echo "dir_forms: $fails check(s) failed"
    exit 1
fi
echo "dir_forms: every command gave the same answer"
