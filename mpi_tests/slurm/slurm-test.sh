#!/usr/bin/env bash
# Runs a batch job on a real, private Slurm cluster of one or two nodes.
#
#   slurm-test.sh STATE_DIR [--nodes 2] [sbatch options] JOB_SCRIPT [job args...]
#   slurm-test.sh STATE_DIR [--nodes 2] --run COMMAND [args...]
#
# Installs slurm-wlm and munge when missing, starts munged (as the munge
# user), slurmctld and slurmd with SLURM_CONF pointing at a config made from
# slurm.conf.in, submits the job and waits for it under a timeout
# (submit-wait.sh), and always stops the daemons by PID.  Exits with the job's
# status; 77 (CTest skip) when not root, since slurmd and munge need root here.
# With --run, COMMAND runs instead while the cluster is up, with SLURM_CONF,
# STS_SLURM_STATE=STATE_DIR, STS_SLURM_NODES and STS_SUBMIT_WAIT (the path of
# submit-wait.sh) exported, so it can submit several jobs and check what they
# wrote; the status is COMMAND's.  STS_SLURM_TIMEOUT bounds each job (default
# 600 s).
#
# One node (the default): the daemons run on this host, the node is this
# host's name at 127.0.0.1.  --nodes 2: the script runs itself again inside a
# simulated cluster (mpi_tests/cluster/cluster.sh: hosts that are network
# namespaces with their own host names on a private bridge, one file system);
# each host runs a slurmd under its own name and address, the first also
# slurmctld, and the job (or COMMAND) is submitted from the first.  munged
# serves all of them from this host through its socket file.  Open MPI inside
# the jobs is told to use TCP on the cluster's subnet (OMPI_MCA_* exported to
# the job's environment).  Exits 77 there too when namespaces cannot be made.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
shift
nodes=1
if [ "${1:-}" = "--nodes" ]; then
    nodes=$2
    shift 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-test: needs root to start munged and slurmd; skipped" >&2
    exit 77
fi
. "$here/../../scripts/deps.sh"
sts_install_deps slurm-wlm munge

if [ "$nodes" -gt 1 ] && [ -z "${STS_CLUSTER_DIR:-}" ]; then
    exec "$here/../cluster/cluster.sh" --hosts "$nodes" -- "$0" "$dir" --nodes "$nodes" "$@"
fi

rm -rf "$dir"
mkdir -p "$dir"/state "$dir"/spool "$dir"/log "$dir"/munge
chown munge:munge "$dir/munge"
chmod 755 "$dir" "$dir/munge"
# The nodes: names, addresses, and how to run a command on each (on[i]).
if [ "$nodes" -gt 1 ]; then
    read -r -a names <<<"$STS_CLUSTER_HOSTS"
    addrs=() on=()
    for ((i = 0; i < nodes; i++)); do
        addrs+=("${STS_CLUSTER_SUBNET%.0/*}.$((i + 1))")
        on+=("$STS_CLUSTER_ON ${names[i]}")
    done
    # Open MPI in the jobs: TCP between the ranks, on the cluster's subnet only.
    export OMPI_MCA_pml=ob1 OMPI_MCA_btl=tcp,self OMPI_MCA_btl_tcp_if_include=$STS_CLUSTER_SUBNET \
        OMPI_MCA_oob_tcp_if_include=$STS_CLUSTER_SUBNET
else
    names=("$(hostname -s)") addrs=(127.0.0.1) on=("")
fi
node_lines=
for ((i = 0; i < nodes; i++)); do
    node_lines+="NodeName=${names[i]} NodeAddr=${addrs[i]} CPUs=4 Boards=1 SocketsPerBoard=1"
    node_lines+=" CoresPerSocket=4 ThreadsPerCore=1 RealMemory=2000 State=UNKNOWN\n"
    mkdir -p "$dir/spool/${names[i]}" "$dir/tmp/${names[i]}"
done
nodelist=$(IFS=,; echo "${names[*]}")
# A port per run keeps concurrent test runs on one machine apart.
port=$((20000 + ($$ % 4000) * 2))
sed -e "s|@HOST@|${names[0]}|g" -e "s|@ADDR@|${addrs[0]}|g" -e "s|^@NODES@$|${node_lines%\\n}|" \
    -e "s|@NODELIST@|$nodelist|g" -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" \
    -e "s|@PORT1@|$((port + 1))|g" "$here/slurm.conf.in" >"$dir/slurm.conf"
export SLURM_CONF=$dir/slurm.conf

# The Slurm daemons stop together (each takes 1-2 s to exit), then munged,
# which they need until they are gone.
stop_pids() {
    local f pid pids=()
    for f in "$@"; do
        [ -f "$f" ] && pids+=("$(cat "$f")")
    done
    [ ${#pids[@]} -eq 0 ] && return 0
    kill "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
}
stop() {
    stop_pids "$dir"/slurmd-*.pid "$dir/slurmctld.pid"
    stop_pids "$dir/munge/munged.pid"
}
trap stop EXIT

runuser -u munge -- /usr/sbin/munged --socket="$dir/munge/munge.socket.2" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/seed" --key-file=/etc/munge/munge.key
# ${on[i]} is empty on one node, "on.sh HOST" on a simulated cluster.
# shellcheck disable=SC2086
${on[0]} slurmctld -i
for ((i = 0; i < nodes; i++)); do
    # shellcheck disable=SC2086
    ${on[i]} slurmd
done

# Wait for every node to come up idle.
for i in $(seq 60); do
    # shellcheck disable=SC2086
    states=$(${on[0]} sinfo -h -N -o %t 2>/dev/null | sort | uniq -c | tr -s ' ' || true)
    [ "$states" = " $nodes idle" ] && break
    [ "$i" -eq 60 ] && { echo "slurm-test: the nodes never became idle ($states)" >&2;
                         tail -n 20 "$dir/log/"*.log >&2; exit 1; }
    sleep 0.5
done

export STS_SLURM_STATE=$dir STS_SLURM_NODES=$nodes STS_SUBMIT_WAIT=$here/submit-wait.sh
set +e
if [ "${1:-}" = "--run" ]; then
    shift
    # shellcheck disable=SC2086
    ${on[0]} "$@"
else
    # shellcheck disable=SC2086
    ${on[0]} "$STS_SUBMIT_WAIT" "${STS_SLURM_TIMEOUT:-600}" "$@"
fi
rc=$?
set -e
[ $rc -eq 124 ] && echo "slurm-test: job timed out" >&2
exit $rc
