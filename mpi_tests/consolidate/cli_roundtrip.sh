#!/bin/sh
# cli_roundtrip.sh STSHARD WORKDIR FIXTURE -- MPIEXEC [ARGS...]
#
# The tool end to end: `stshard save` with 3 ranks, `stshard consolidate`
# with 2 (JSON summary, nothing on stderr off a terminal, AlreadyExists,
# --force), `stshard verify`; then the PyTorch-layout fixture of
# make_pytorch_shards.py consolidated with 4 ranks and compared byte for
# byte with its golden files (canonical; --mapping --layout pytorch), a
# --reference run and a --max-file-size split.
set -u
stshard=$1 work=$2 fix=$3
shift 4
mpi="$*"
fail=0
check() { # check WHAT STATUS COMMAND...
    what=$1 want=$2
    shift 2
    "$@" >"$work/out.txt" 2>"$work/err.txt"
    got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit status $got, expected $want"
        cat "$work/out.txt" "$work/err.txt"
        fail=1
    fi
}
same() {
    if ! cmp "$1" "$2"; then
        echo "FAIL: $1 differs from $2"
        fail=1
    fi
}

rm -rf "$work" && mkdir -p "$work" || exit 1
check save 0 $mpi -n 3 "$stshard" save "$work/saved" --model mixed:3MiB --strategy mesh2d --dtype F32
check consolidate 0 $mpi -n 2 "$stshard" consolidate "$work/saved" "$work/out" --json
grep -q '"tensors": [1-9]' "$work/out.txt" || { echo "FAIL: no JSON summary"; fail=1; }
[ -s "$work/err.txt" ] && { echo "FAIL: stderr not empty off a terminal:"; cat "$work/err.txt"; fail=1; }
check verify 0 "$stshard" verify "$work/out"
check again 3 $mpi -n 2 "$stshard" consolidate "$work/saved" "$work/out"
grep -q AlreadyExists "$work/err.txt" || { echo "FAIL: no AlreadyExists"; fail=1; }
check force 0 $mpi -n 1 "$stshard" consolidate "$work/saved" "$work/out" --force --buffer-size 1KiB
lines=$(wc -l <"$work/out.txt")
[ "$lines" = 1 ] || { echo "FAIL: $lines summary lines"; fail=1; }
check verify2 0 "$stshard" verify "$work/out"

check pytorch_canonical 0 $mpi -n 4 "$stshard" consolidate "$fix/shards" "$work/pt"
same "$work/pt/model-00001-of-00001.safetensors" "$fix/expected/canonical/model-00001-of-00001.safetensors"
same "$work/pt/model.safetensors.index.json" "$fix/expected/canonical/model.safetensors.index.json"
check pytorch_layout 0 $mpi -n 3 "$stshard" consolidate "$fix/shards" "$work/pt2" \
    --mapping "$fix/mapping.json" --layout pytorch
for k in 1 2; do
    same "$work/pt2/model-0000$k-of-00002.safetensors" "$fix/expected/pytorch/model-0000$k-of-00002.safetensors"
done
check reference 0 $mpi -n 2 "$stshard" consolidate "$fix/shards" "$work/ref" --reference "$work/pt2" --json
grep -q '"output_files": 2' "$work/out.txt" || { echo "FAIL: --reference did not give 2 files"; fail=1; }
check verify_ref 0 "$stshard" verify "$work/ref"
check split 0 $mpi -n 2 "$stshard" consolidate "$fix/shards" "$work/split" --max-file-size 200B --align 4096
check verify_split 0 "$stshard" verify "$work/split"
[ -f "$work/split/model-00001-of-00004.safetensors" ] || { echo "FAIL: no 4-way split"; ls "$work/split"; fail=1; }

[ $fail = 0 ] && rm -rf "$work"
exit $fail
