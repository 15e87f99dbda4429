#!/usr/bin/env bash
# mpirun.sh [mpirun options] PROGRAM [args...]: Open MPI's mpirun on the head
# host of a simulated cluster (cluster.sh exports STS_CLUSTER_*), over its
# hostfile (2 slots a host, filled in host order), with the remote daemons
# started through agent.sh and every byte between ranks on TCP over the test
# subnet: no shared memory transport, no other interface.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${STS_CLUSTER_DIR:?run me under cluster.sh}"
head=${STS_CLUSTER_HOSTS%% *}
net=$STS_CLUSTER_SUBNET
exec "$here/on.sh" "$head" mpirun --hostfile "$STS_CLUSTER_DIR/hostfile" \
    --mca plm_rsh_agent "$here/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca pml ob1 --mca btl tcp,self --mca btl_tcp_if_include "$net" \
    --mca oob_tcp_if_include "$net" "$@"
