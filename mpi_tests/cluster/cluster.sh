#!/usr/bin/env bash
# A private simulated cluster on one Linux machine: N "hosts", each a network
# namespace with its own host name, joined by a Linux bridge on a private
# test subnet.  Runs a command while the cluster is up, then tears it down.
#
#   cluster.sh [--hosts N] [--] COMMAND [args...]
#   cluster.sh --sweep                  remove what killed runs left behind
#
# The hosts are sts<PID>n1 .. sts<PID>nN (namespace = host name, unique per
# run); host i has address 10.77.0.i/24 on its eth0, the bridge lives in a
# namespace of its own (sts<PID>sw), so nothing of the cluster is in the
# machine's own network namespace.  Commands enter a host with nsenter, not
# `ip netns exec`, which would remount /sys without the cgroup file systems
# that slurmd needs.  Mount and PID namespaces stay shared: /work, /tmp and
# /dev/shm are the same files on every host, as a parallel file system would
# be, and the test can see and signal every host's processes.  The host names
# are not in any resolver (nothing here needs them resolved: Open MPI passes
# them to the agent, Slurm has each node's address in its configuration).
#
# COMMAND runs in the machine's own namespaces with these exported:
#   STS_CLUSTER_HOSTS    the host names, space-separated, head (n1) first
#   STS_CLUSTER_SUBNET   10.77.0.0/24
#   STS_CLUSTER_DIR      a private directory holding the hostfile (2 slots a host)
#   STS_CLUSTER_ON       on.sh: `on.sh HOST CMD...` runs CMD as HOST
#   STS_CLUSTER_MPIRUN   mpirun.sh: `mpirun.sh -n P ...` runs Open MPI's
#                        mpirun on the head host over the hostfile, TCP only
#                        on the test subnet, remote daemons started through
#                        agent.sh
# Its status is cluster.sh's.  Teardown (on any exit, also after SIGINT or
# SIGTERM): every process still inside a host is killed, the namespaces are
# removed by name.  A SIGKILL leaves them behind; `cluster.sh --sweep` (also
# run at every start) removes the leftovers of runs whose PID is gone.
#
# Exits 77 (CTest skip) when it cannot create network namespaces: not root,
# no CAP_NET_ADMIN, no `ip`, `nsenter` or `unshare`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SUBNET_PREFIX=10.77.0
hosts=2

skip() {
    echo "cluster: $*; skipped" >&2
    exit 77
}

# Removes one run's namespaces: processes inside first (a namespace outlives
# its deletion while a process holds it), then the names.
teardown_prefix() { # PREFIX
    local ns pids
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1(n[0-9]+|sw)$" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

# Leftovers of runs killed by SIGKILL: prefixes whose PID no longer runs.
sweep() {
    local p pid
    for p in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^\(sts[0-9]*\)\(n[0-9]*\|sw\)$/\1/p' | sort -u); do
        pid=${p#sts}
        # A zombie counts as gone: an orphan may wait a while to be reaped.
        if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)" = Z ] ||
            ! kill -0 "$pid" 2>/dev/null; then
            teardown_prefix "$p"
        fi
    done
}

case ${1:-} in
--sweep)
    [ "$(id -u)" -eq 0 ] || skip "needs root"
    sweep
    exit 0
    ;;
--hosts)
    hosts=$2
    shift 2
    ;;
esac
[ "${1:-}" = "--" ] && shift
[ $# -ge 1 ] || { echo "usage: cluster.sh [--hosts N] [--] COMMAND [args...]" >&2; exit 2; }
if [ "$hosts" -lt 1 ] || [ "$hosts" -gt 9 ]; then
    echo "cluster: --hosts must be 1..9" >&2
    exit 2
fi

command -v ip >/dev/null || skip "no ip command (iproute2)"
command -v unshare >/dev/null || skip "no unshare command (util-linux)"
command -v nsenter >/dev/null || skip "no nsenter command (util-linux)"
[ "$(id -u)" -eq 0 ] || skip "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for network namespaces"

prefix=sts$$
sw=${prefix}sw
dir=$(mktemp -d "${TMPDIR:-/tmp}/sts-cluster.XXXXXX")
names=()
for ((i = 1; i <= hosts; i++)); do names+=("${prefix}n$i"); done

child=
teardown() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$child" ] && kill -TERM -- "-$child" 2>/dev/null
    teardown_prefix "$prefix"
    rm -rf "$dir"
    exit $rc
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sweep
ip netns add "$sw" 2>/dev/null || skip "cannot create a network namespace (no CAP_NET_ADMIN?)"
ip -n "$sw" link add br0 type bridge
ip -n "$sw" link set br0 up
ip -n "$sw" link set lo up

: >"$dir/hostfile"
for ((i = 1; i <= hosts; i++)); do
    h=${names[i - 1]}
    ip netns add "$h"
    # The veth pair is created with one end in each namespace, so its names
    # never appear in the machine's own namespace.
    ip link add name eth0 netns "$h" type veth peer name "p$i" netns "$sw"
    ip -n "$sw" link set "p$i" master br0 up
    ip -n "$h" addr add "$SUBNET_PREFIX.$i/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
    echo "$h slots=2" >>"$dir/hostfile"
done

# Every link up (carrier on both ends) before anything starts.
for ((i = 1; i <= hosts; i++)); do
    ok=0
    for _ in $(seq 50); do
        if ip -n "${names[i - 1]}" link show eth0 | grep -q LOWER_UP &&
            ip -n "$sw" link show "p$i" | grep -q LOWER_UP; then
            ok=1
            break
        fi
        sleep 0.1
    done
    [ $ok = 1 ] || { echo "cluster: the link of ${names[i - 1]} never came up" >&2; exit 1; }
done

export STS_CLUSTER_HOSTS="${names[*]}" STS_CLUSTER_SUBNET=$SUBNET_PREFIX.0/24 STS_CLUSTER_DIR=$dir
export STS_CLUSTER_ON=$here/on.sh STS_CLUSTER_MPIRUN=$here/mpirun.sh
echo "cluster: up: ${names[*]} on $STS_CLUSTER_SUBNET (state in $dir)" >&2
# By hand (a terminal on stdin, e.g. `cluster.sh bash`), COMMAND runs in the
# foreground and keeps the terminal.  Otherwise in the background, so a signal
# to this script runs the teardown at once rather than after COMMAND ends, and
# in a process group of its own (setsid does not fork here, the job not
# leading a group), which the teardown stops whole, runs on this host
# included; its stdin stays this script's (a background job would get
# /dev/null).
set +e
if [ -t 0 ]; then
    "$@"
    rc=$?
else
    setsid "$@" <&0 &
    child=$!
    wait $child
    rc=$?
    child=
fi
set -e
exit $rc
