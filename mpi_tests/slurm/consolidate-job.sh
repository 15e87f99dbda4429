#!/usr/bin/env bash
# The Slurm templates on a real (private, one-node) Slurm cluster.  Run by
#   slurm-test.sh STATE_DIR --run consolidate-job.sh STSHARD SOURCE_DIR WORK_DIR
# which starts the cluster and exports SLURM_CONF, STS_SLURM_STATE and
# STS_SUBMIT_WAIT.  Every job goes through sbatch and the templates of
# scripts/slurm/, 2 tasks each:
#   1. save.sbatch (srun --mpi=pmix) writes rank files of a small model;
#   2. consolidate.sbatch (srun --mpi=pmix, Open MPI's default MPI-IO);
#   3. consolidate.sbatch again through mpirun with ROMIO and hints from the
#      environment knobs (STS_LAUNCH, STS_IO, STS_CB_NODES, STS_ROMIO_CB_WRITE);
#   4. consolidate.sbatch on a missing input: the job must fail with status 3;
#   5. bench.sbatch with ROMIO and hints: one iteration of every phase and the
#      baselines; the report must name the component and the hints.
# Then the outputs are checked: both consolidations valid (stshard verify) and
# byte-identical, every element equal to the generator's (load.sbatch running
# stshard load --check-seed), the job logs naming the launcher and hints, the
# bench table and JSON complete.
set -euo pipefail
stshard=$1
src=$2
work=$3
: "${STS_SUBMIT_WAIT:?run me through slurm-test.sh --run}"
limit=${STS_SLURM_TIMEOUT:-120}
export STSHARD=$stshard STS_SLURM_DIR=$src/scripts/slurm
rm -rf "$work"
mkdir -p "$work"
cd "$work"

fail() {
    echo "consolidate-job: FAIL: $*" >&2
    exit 1
}
expect() { # FILE REGEX...: every regex matches a line of FILE
    local f=$1 re
    shift
    for re in "$@"; do
        grep -Eq -- "$re" "$f" || { cat "$f" >&2; fail "$f does not match: $re"; }
    done
}
job() { # NAME [sbatch options] TEMPLATE [args]: runs a job, its output into NAME.out
    local name=$1 rc=0
    shift
    "$STS_SUBMIT_WAIT" "$limit" "$@" >"$name.out" 2>&1 || rc=$?
    echo "== job $name: status $rc" >&2
    return $rc
}

seed=7
job save -n 2 "$STS_SLURM_DIR/save.sbatch" "$work/ranks" --model llama:8MiB --seed $seed ||
    { cat save.out >&2; fail "save job"; }
expect save.out "launcher srun, hints 'none'" "^save: .* 2 ranks, 2 files"

job cons -n 2 "$STS_SLURM_DIR/consolidate.sbatch" "$work/ranks" "$work/cons" ||
    { cat cons.out >&2; fail "consolidate job (srun)"; }
expect cons.out "2 tasks on 1 nodes, launcher srun" "^consolidated [0-9]+ tensors from 2 rank files"

STS_LAUNCH=mpirun STS_IO=romio321 STS_CB_NODES=1 STS_ROMIO_CB_WRITE=enable \
    job cons_romio -n 2 "$STS_SLURM_DIR/consolidate.sbatch" "$work/ranks" "$work/cons_romio" ||
    { cat cons_romio.out >&2; fail "consolidate job (mpirun, romio321)"; }
expect cons_romio.out "launcher mpirun, hints 'cb_nodes=1,romio_cb_write=enable'" \
    "^consolidated [0-9]+ tensors from 2 rank files"

rc=0
job missing -n 2 "$STS_SLURM_DIR/consolidate.sbatch" "$work/no-such-dir" "$work/cons_missing" ||
    rc=$?
[ $rc -eq 3 ] || { cat missing.out >&2; fail "a missing input gave job status $rc, not 3"; }
expect missing.out "NotFound"
[ ! -e "$work/cons_missing/model.safetensors.index.json" ] || fail "a failed job left an index"

STS_IO=romio321 STS_STRIPING_FACTOR=2 STS_EXTRA_HINTS=cb_buffer_size=1048576 \
    job bench -n 2 "$STS_SLURM_DIR/bench.sbatch" --model llama:4MiB --iterations 1 --baseline \
    --transfer-size 1MiB --dir "$work/bench" --json "$work/bench.json" ||
    { cat bench.out >&2; fail "bench job"; }
expect bench.out "^Summary of all tests:" "^save +[0-9.]+ " "^consolidate +[0-9.]+ " \
    "^load +[0-9.]+ " "^fpp-write +[0-9.]+ " "^shared-read +[0-9.]+ " "of raw copy$" \
    "^MPI-IO component +: romio321 \\(io=romio321;" \
    "^STSHARD_MPI_HINTS +: striping_factor=2,cb_buffer_size=1048576$" \
    "^Hints in effect +:.* cb_buffer_size=1048576"
expect bench.json '"mpiio_component":[[:space:]]*"[a-z0-9]+"' '"operation":[[:space:]]*"shared-write"' '"rank_bytes"'

# The outputs themselves.
"$stshard" verify "$work/cons" >verify.out 2>&1 || { cat verify.out >&2; fail "verify"; }
expect verify.out "valid$"
n=0
for f in "$work"/cons/*; do
    cmp "$f" "$work/cons_romio/$(basename "$f")" || fail "srun and mpirun+romio321 outputs differ"
    n=$((n + 1))
done
[ $n -ge 2 ] || fail "expected model files and an index in $work/cons, found $n files"
job load -n 2 "$STS_SLURM_DIR/load.sbatch" "$work/cons" --strategy tp --check-seed $seed ||
    { cat load.out >&2; fail "load job"; }
expect load.out "launcher srun" "elements compared, 0 differ"
echo "consolidate-job: ok ($n files, every element checked)"
