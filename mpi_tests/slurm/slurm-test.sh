#!/usr/bin/env bash
# Runs a batch job on a real, private, one-node Slurm cluster.
#
#   slurm-test.sh STATE_DIR [sbatch options] JOB_SCRIPT [job args...]
#   slurm-test.sh STATE_DIR --run COMMAND [args...]
#
# Installs slurm-wlm and munge when missing, starts munged (as the munge
# user), slurmctld and slurmd with SLURM_CONF pointing at a config made from
# slurm.conf.in, submits the job and waits for it under a timeout
# (submit-wait.sh), and always stops the daemons by PID.  Exits with the job's
# status; 77 (CTest skip) when not root, since slurmd and munge need root here.
# With --run, COMMAND runs instead while the cluster is up, with SLURM_CONF,
# STS_SLURM_STATE=STATE_DIR and STS_SUBMIT_WAIT (the path of submit-wait.sh)
# exported, so it can submit several jobs and check what they wrote; the
# status is COMMAND's.  STS_SLURM_TIMEOUT bounds each job (default 600 s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
shift

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-test: needs root to start munged and slurmd; skipped" >&2
    exit 77
fi
. "$here/../../scripts/deps.sh"
sts_install_deps slurm-wlm munge

rm -rf "$dir"
mkdir -p "$dir"/state "$dir"/spool "$dir"/log "$dir"/munge
chown munge:munge "$dir/munge"
chmod 755 "$dir" "$dir/munge"
host=$(hostname -s)
# A port per run keeps concurrent test runs on one machine apart.
port=$((20000 + ($$ % 4000) * 2))
sed -e "s|@HOST@|$host|g" -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" \
    -e "s|@PORT1@|$((port + 1))|g" "$here/slurm.conf.in" >"$dir/slurm.conf"
export SLURM_CONF=$dir/slurm.conf

# The Slurm daemons stop together (each takes 1-2 s to exit), then munged,
# which they need until they are gone.
stop_pids() {
    local pid pids=()
    for f in "$@"; do
        [ -f "$dir/$f" ] && pids+=("$(cat "$dir/$f")")
    done
    [ ${#pids[@]} -eq 0 ] && return 0
    kill "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
}
stop() {
    stop_pids slurmd.pid slurmctld.pid
    stop_pids munge/munged.pid
}
trap stop EXIT

runuser -u munge -- /usr/sbin/munged --socket="$dir/munge/munge.socket.2" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/seed" --key-file=/etc/munge/munge.key
slurmctld -i
slurmd

# Wait for the node to come up idle.
for i in $(seq 60); do
    state=$(sinfo -h -o %t 2>/dev/null || true)
    [ "$state" = "idle" ] && break
    [ "$i" -eq 60 ] && { echo "slurm-test: node never became idle ($state)" >&2;
                         tail -n 20 "$dir/log/"*.log >&2; exit 1; }
    sleep 0.5
done

export STS_SLURM_STATE=$dir STS_SUBMIT_WAIT=$here/submit-wait.sh
set +e
if [ "${1:-}" = "--run" ]; then
    shift
    "$@"
else
    "$STS_SUBMIT_WAIT" "${STS_SLURM_TIMEOUT:-600}" "$@"
fi
rc=$?
set -e
[ $rc -eq 124 ] && echo "slurm-test: job timed out" >&2
exit $rc
