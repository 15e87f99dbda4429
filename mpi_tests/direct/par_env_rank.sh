#!/bin/bash
# par_env_rank.sh RANK NAME=VALUE COMMAND [ARGS...]
#
# One MPI rank of a launch: sets NAME=VALUE in the environment of rank RANK
# only (as when mpirun does not pass a variable to another host), then runs
# COMMAND.
set -euo pipefail
rank=$1 assign=$2
shift 2
if [ "${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-}}" = "$rank" ]; then
    export "${assign?}"
fi
exec "$@"
