#!/bin/sh
# par_save_cli.sh OUTDIR MODEL STRATEGY DTYPE NP FILES CHECK STSHARD -- LAUNCHER...
#
# Runs `LAUNCHER stshard save` on a synthetic model (FILES > 0: with a
# round-robin mapping over FILES files), then checks the checkpoint with
# par_save_check (blocks, tiling, values, names) and `stshard verify`.
set -eu
out=$1 model=$2 strategy=$3 dtype=$4 np=$5 files=$6 check=$7 stshard=$8
shift 8
[ "$1" = "--" ] && shift
rm -rf "$out" "$out.json" "$out.mapping.json"
set -- "$@" "$stshard" save "$out" --model "$model" --strategy "$strategy" --dtype "$dtype" \
    --seed 7 --json
if [ "$files" -gt 0 ]; then
    "$check" --write-mapping "$model" "$dtype" "$files" "$out.mapping.json"
    set -- "$@" --mapping "$out.mapping.json"
fi
echo "+ $*"
"$@" >"$out.json"
cat "$out.json"
grep -q "\"ranks\": $np," "$out.json"
if [ "$files" -gt 0 ]; then
    "$check" "$out" "$model" "$strategy" "$np" 7 "$dtype" "$out.mapping.json"
else
    "$check" "$out" "$model" "$strategy" "$np" 7 "$dtype"
fi
"$stshard" verify "$out"
