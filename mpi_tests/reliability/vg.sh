#!/bin/sh
# vg.sh SUPP KEEPDL STATUS COMMAND [ARGS...]
#
# Runs COMMAND under valgrind memcheck (one MPI rank when started by
# mpiexec) and exits 0 only when COMMAND exited with STATUS and valgrind
# found no error: no invalid access, no use of uninitialised values, no
# definite leak.  SUPP is the suppression file for Open MPI's own noise;
# KEEPDL a library preloaded so that Open MPI's plugins stay mapped after
# MPI_Finalize and their frames keep names the suppressions can match.
supp=$1 keepdl=$2 want=$3
shift 3
LD_PRELOAD=$keepdl valgrind -q --error-exitcode=97 --leak-check=full \
    --show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=40 \
    --suppressions="$supp" "$@"
got=$?
if [ "$got" = 97 ]; then
    echo "vg.sh: valgrind found errors in: $*" >&2
    exit 1
fi
if [ "$got" != "$want" ]; then
    echo "vg.sh: exit status $got, expected $want: $*" >&2
    exit 1
fi
exit 0
