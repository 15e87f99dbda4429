# launch.sh - sourced by the tool tests that start stshard under MPI.
#
# Expects $launcher (mpiexec), $npflag (-n) and $pre (MPIEXEC_PREFLAGS, word
# split on purpose) to be set.  `launch N CMD...` echoes the command line to
# stderr, so a failing test's log shows what ran, then runs CMD on N ranks.
launch() {
    n=$1
    shift
    echo "+ $launcher $npflag $n $pre $*" >&2
    # shellcheck disable=SC2086
    "$launcher" "$npflag" "$n" $pre "$@"
}
