#!/usr/bin/env bash
# Submits one batch job and waits for it; prints its output; exits with its status.
#
#   submit-wait.sh TIMEOUT_S [sbatch options] JOB_SCRIPT [job args...]
#
# Needs SLURM_CONF (client commands fail with a DNS error without it) and
# STS_SLURM_STATE, the cluster's state directory, where job-<id>.out goes.
# `sbatch --wait` polls at growing intervals (a 1-second job takes about 10 s
# to be noticed), so this polls `scontrol show job` every 0.2 s instead; the
# controller keeps a finished job's record for MinJobAge (300 s), long enough
# to read its state and exit code.  A job still running at the timeout is
# cancelled and the status is 124, as timeout(1) would give.
set -euo pipefail
limit=$1
shift
: "${SLURM_CONF:?SLURM_CONF must point at the cluster's slurm.conf}"
: "${STS_SLURM_STATE:?STS_SLURM_STATE must be the cluster's state directory}"

id=$(sbatch --parsable -o "$STS_SLURM_STATE/job-%j.out" "$@")
id=${id%%;*}
out=$STS_SLURM_STATE/job-$id.out
start=$SECONDS
while :; do
    line=$(scontrol -o show job "$id" 2>/dev/null || true)
    state=$(sed -n 's/.* JobState=\([A-Z_]*\) .*/\1/p' <<<"$line")
    case $state in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        break ;;
    esac
    if [ $((SECONDS - start)) -ge "$limit" ]; then
        scancel "$id" 2>/dev/null || true
        cat "$out" 2>/dev/null || true
        echo "submit-wait: job $id ($*) still ${state:-unknown} after ${limit}s; cancelled" >&2
        exit 124
    fi
    sleep 0.2
done
# ExitCode=STATUS:SIGNAL; a signal is reported the shell's way, 128 + its number.
read -r status signal < <(sed -n 's/.* ExitCode=\([0-9]*\):\([0-9]*\).*/\1 \2/p' <<<"$line")
cat "$out" 2>/dev/null || true
echo "submit-wait: job $id $state, exit code ${status:-?}:${signal:-?}" >&2
[ "${signal:-0}" != 0 ] && exit $((128 + signal))
exit "${status:-1}"
