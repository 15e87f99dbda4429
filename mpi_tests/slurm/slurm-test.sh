#!/usr/bin/env bash
# Runs a batch job on a real, private, one-node Slurm cluster.
#
#   slurm-test.sh STATE_DIR [sbatch options] JOB_SCRIPT [job args...]
#
# Installs slurm-wlm and munge when missing, starts munged (as the munge
# user), slurmctld and slurmd with SLURM_CONF pointing at a config made from
# slurm.conf.in, submits the job with `sbatch --wait` under a timeout, and
# always stops the daemons by PID.  Exits with the job's status; 77 (CTest
# skip) when not root, since slurmd and munge need root here.
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

stop() {
    local f pid
    for f in slurmd.pid slurmctld.pid munge/munged.pid; do
        [ -f "$dir/$f" ] || continue
        pid=$(cat "$dir/$f")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
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

set +e
timeout 600 sbatch --wait -o "$dir/job-%j.out" "$@"
rc=$?
set -e
cat "$dir"/job-*.out 2>/dev/null || true
[ $rc -eq 124 ] && echo "slurm-test: job timed out" >&2
exit $rc
