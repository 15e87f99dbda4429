#!/usr/bin/env bash
# agent.sh HOST COMMAND...: Open MPI's plm_rsh_agent for a simulated cluster
# (cluster.sh), in place of ssh.  Like ssh it joins the words of COMMAND into
# one shell command line and runs it on HOST with a fresh login-like
# environment: whatever the ranks need beyond it must come through mpirun
# (-x, --mca), as on real hosts.  The one exception is Open MPI's permission
# to run as root, which a root login on a real cluster would set in its
# shell start-up files.
set -euo pipefail
h=$1
shift
exec nsenter --net=/run/netns/"$h" unshare --uts -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="${HOME:-/root}" USER="$(id -un)" LOGNAME="$(id -un)" SHELL=/bin/sh LANG=C.UTF-8 \
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    sh -c 'hostname "$0" && exec sh -c "$1"' "$h" "$*"
