#!/usr/bin/env bash
# The main job.  Installs what is missing, builds, and runs the flagship demo
# on a generated Llama-style model of 1 GiB (BF16) with 2 MPI ranks:
#   1. `stshard bench`: a sharded save of the model (tensor-parallel blocks,
#      one rank file per rank), its consolidation into a Hugging Face
#      checkpoint, and a load of every rank's share back with offset reads,
#      each timed twice beside raw MPI-IO writes and reads of the same bytes;
#      then every element read back is compared with the generator;
#   2. `stshard verify` of the rank files and of the consolidated checkpoint;
#   3. the bench summary (also in bench.json with every raw figure).
# Env: STS_RUN_DIR (where to write; default a new directory in /dev/shm when
#      it has 6 GiB free, so the figures are the software's and not a shared
#      disk's, else in /tmp), STS_RUN_KEEP=1 (keep the checkpoints; by default
#      they are removed from /dev/shm at the end, to give the memory back),
#      STS_RUN_MODEL (default llama:1GiB), STS_RUN_RANKS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
sts_install_deps

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target stshard_cli
stshard=build/src/cli/stshard
model=${STS_RUN_MODEL:-llama:1GiB}
ranks=${STS_RUN_RANKS:-2}
if [ -z "${STS_RUN_DIR:-}" ]; then
    base=/tmp
    free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    [ "${free_kib:-0}" -ge $((6 << 20)) ] && base=/dev/shm
    STS_RUN_DIR=$(mktemp -d "$base/stshard-run.XXXXXX")
fi
out=$STS_RUN_DIR
mkdir -p "$out"

echo
echo "== 1. save, consolidate and load $model on $ranks ranks (stshard bench)"
mpirun -n "$ranks" --oversubscribe "$stshard" bench --model "$model" --iterations 2 --baseline \
    --check --keep --dir "$out" --json "$out/bench.json" | tee "$out/bench.txt"
ckpt=$(sed -n 's/^Kept *: //p' "$out/bench.txt")
grep -Eq "^Check +: [1-9][0-9]* elements read back and compared, 0 differ$" "$out/bench.txt" ||
    { echo "run.sh: the data read back differs from the model" >&2; exit 1; }

echo
echo "== 2. verify the rank files and the consolidated checkpoint"
"$stshard" verify "$ckpt/ranks"
"$stshard" verify "$ckpt/consolidated"
"$stshard" inspect "$ckpt/consolidated" | tail -n 1
ls -l "$ckpt/consolidated"

echo
echo "== 3. summary"
sed -n '/^Summary of all tests:/,/^Finished/p' "$out/bench.txt"
echo
case $ckpt in
/dev/shm/*)
    if [ "${STS_RUN_KEEP:-0}" != 1 ]; then
        rm -rf "$ckpt"
        ckpt="(removed from /dev/shm; STS_RUN_KEEP=1 keeps it)"
    fi ;;
esac
echo "run.sh: ok.  Checkpoints: $ckpt"
echo "        Every raw figure: $out/bench.json; the table: $out/bench.txt"
