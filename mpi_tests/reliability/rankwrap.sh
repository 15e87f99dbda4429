#!/bin/sh
# rankwrap.sh STATUSDIR COMMAND [ARGS...]
#
# Runs COMMAND as one MPI rank (mpiexec starts one copy per rank) and records
# its exit status in STATUSDIR/rank.<rank>, so a test can check the status of
# EVERY rank, not only the one the launcher passes on.  With RANKWRAP_EXEC=1
# it records its pid in STATUSDIR/pid.<rank> instead and becomes COMMAND, so
# a test can signal the rank process itself.
dir=$1
shift
rank=${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-unknown}}
if [ "${RANKWRAP_EXEC:-0}" = 1 ]; then
    echo $$ >"$dir/pid.$rank"
    exec "$@"
fi
# When one rank exits non-zero, Open MPI's launcher aborts the job and sends
# SIGTERM (SIGKILL about a second later) to the ranks still running, which
# may be a rank that has its error and is just leaving.  Ignoring SIGTERM
# (the command inherits that) lets it finish and record its own status.
trap '' TERM
"$@"
status=$?
echo "$status" >"$dir/rank.$rank"
exit "$status"
