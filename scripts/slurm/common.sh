# Sourced by the stshard sbatch templates: picks the launcher and turns
# environment knobs into MPI-IO hints.
#
#   STS_LAUNCH=srun|mpirun     srun uses --mpi=pmix (pmi2 does not work with
#                              Debian's Open MPI); default srun
#   STS_IO=ompio|romio321      Open MPI's MPI-IO component (default: Open MPI's choice)
#   STS_STRIPING_FACTOR=N      Lustre stripe count for files we create
#   STS_STRIPING_UNIT=BYTES    Lustre stripe size
#   STS_CB_NODES=N             number of collective-buffering aggregators
#   STS_ROMIO_CB_WRITE=enable|disable|automatic
#   STS_EXTRA_HINTS=k=v,...    any other hints, passed through
#   STS_LFS_DIR=DIR            on Lustre: `lfs setstripe` DIR with the striping knobs
#                              before the launch, so files created in it inherit the
#                              layout whichever MPI-IO component opens them
#   STSHARD=path               the stshard binary (default: stshard on PATH)
set -euo pipefail

STSHARD=${STSHARD:-stshard}
STS_LAUNCH=${STS_LAUNCH:-srun}

hints=()
[ -n "${STS_STRIPING_FACTOR:-}" ] && hints+=("striping_factor=$STS_STRIPING_FACTOR")
[ -n "${STS_STRIPING_UNIT:-}" ] && hints+=("striping_unit=$STS_STRIPING_UNIT")
[ -n "${STS_CB_NODES:-}" ] && hints+=("cb_nodes=$STS_CB_NODES")
[ -n "${STS_ROMIO_CB_WRITE:-}" ] && hints+=("romio_cb_write=$STS_ROMIO_CB_WRITE")
[ -n "${STS_EXTRA_HINTS:-}" ] && hints+=("$STS_EXTRA_HINTS")
if [ ${#hints[@]} -gt 0 ]; then
    STSHARD_MPI_HINTS=$(IFS=,; echo "${hints[*]}")
    export STSHARD_MPI_HINTS
fi
# OMPIO does not read the ROMIO hint names for Lustre striping; give it its own knobs.
[ -n "${STS_STRIPING_FACTOR:-}" ] && export OMPI_MCA_fs_lustre_stripe_width=$STS_STRIPING_FACTOR
[ -n "${STS_STRIPING_UNIT:-}" ] && export OMPI_MCA_fs_lustre_stripe_size=$STS_STRIPING_UNIT
[ -n "${STS_IO:-}" ] && export OMPI_MCA_io=$STS_IO

# A directory's default layout is the one striping setting every Lustre client honours.
if [ -n "${STS_LFS_DIR:-}" ]; then
    if command -v lfs >/dev/null 2>&1; then
        mkdir -p "$STS_LFS_DIR"
        lfs setstripe ${STS_STRIPING_FACTOR:+-c "$STS_STRIPING_FACTOR"} \
            ${STS_STRIPING_UNIT:+-S "$STS_STRIPING_UNIT"} "$STS_LFS_DIR"
        echo "stshard: lfs setstripe on $STS_LFS_DIR: $(lfs getstripe -d "$STS_LFS_DIR" | tr '\n' ' ')" >&2
    else
        echo "stshard: STS_LFS_DIR is set but there is no lfs command (not Lustre?); ignored" >&2
    fi
fi

sts_launch() {
    case "$STS_LAUNCH" in
    srun) srun --mpi=pmix "$@" ;;
    mpirun) mpirun ${SLURM_NTASKS:+-n "$SLURM_NTASKS"} "$@" ;;
    *) echo "STS_LAUNCH must be srun or mpirun, not '$STS_LAUNCH'" >&2; return 2 ;;
    esac
}

echo "stshard job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NUM_NODES:-?} nodes," \
     "launcher $STS_LAUNCH, hints '${STSHARD_MPI_HINTS:-none}'" >&2
