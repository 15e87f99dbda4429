#!/usr/bin/env bash
# on.sh HOST CMD [args...]: runs CMD "on" HOST of a simulated cluster
# (cluster.sh): in HOST's network namespace and in a UTS namespace of its own
# whose host name is HOST.  The environment is kept (see agent.sh for the
# ssh-like launch that clears it).
set -euo pipefail
h=$1
shift
exec nsenter --net=/run/netns/"$h" unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "$h" "$@"
