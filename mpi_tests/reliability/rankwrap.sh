#!/bin/sh
# rankwrap.sh STATUSDIR COMMAND [ARGS...]
#
# Runs COMMAND as one MPI rank (mpiexec starts one copy per rank) and records
# its exit status in STATUSDIR/rank.<rank>, so a test can check the status of
# EVERY rank, not only the one the launcher passes on.
dir=$1
shift
"$@"
status=$?
echo "$status" >"$dir/rank.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-unknown}}"
exit "$status"
