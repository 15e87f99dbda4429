#!/bin/bash
# moe_check.sh GEN_MOE STSHARD WORKDIR NP -- MPIEXEC [ARGS...]
#
# gen_moe's MoE-shaped rank files (7 files x 1500 tiny tensors over 4
# layers) consolidated by `stshard consolidate` on NP ranks, one output file
# and split by --max-file-size in both layouts, then checked value by value
# against gen_moe's formula and by `stshard verify`.  The checker itself must
# reject an output made from other values (another seed).
set -euo pipefail
gen=$1 stshard=$2 work=$3 np=$4
shift 5
mpi=("$@")
files=7 tensors=1500
rm -rf "$work"
mkdir -p "$work"
"$gen" "$work/in" $files $tensors
run() { # run OUT [consolidate options...]
    local out=$1
    shift
    echo "+ ${mpi[*]} -n $np stshard consolidate $work/in $out $*" >&2
    "${mpi[@]}" -n "$np" "$stshard" consolidate "$work/in" "$out" "$@" --json
    "$gen" --check "$out" $files $tensors
    "$stshard" verify "$out"
}
run "$work/one"
run "$work/split" --max-file-size 40KB
run "$work/pt" --max-file-size 40KB --layout pytorch
n=$(ls "$work/split"/model-*.safetensors | wc -l)
[ "$n" -gt 1 ] || { echo "FAIL: --max-file-size 40KB gave $n file(s)"; exit 1; }
if "$gen" --check "$work/one" $files $tensors --seed 3 2>/dev/null; then
    echo "FAIL: gen_moe --check accepted values of another seed"
    exit 1
fi
rm -rf "$work"
echo "moe_check: ok"
