#!/usr/bin/env bash
# bench-direct.sh - the direct save (`stshard save --direct`: blocks written
# straight into the Hugging Face files) against save followed by consolidate
# (`stshard save --consolidate`: rank files, then consolidation, then the rank
# files removed, all in one call), interleaved in the same run.
#
# Usage: scripts/bench-direct.sh [-m MODEL] [-n RANKS] [-r REPEATS] [-t STRATEGIES] [-d DIR]... [-F]
#   -m MODEL       synthetic model (default llama:2GiB)
#   -n RANKS       MPI ranks (default 2)
#   -r REPEATS     runs of each variant, alternating two-step/direct (default 3); medians reported
#   -t STRATEGIES  sharding strategies (default "tp col")
#   -d DIR         a directory to measure in (repeatable; default /dev/shm and /tmp)
#   -F             also measure with --fsync
# Env: STSHARD (the stshard binary; default build/src/cli/stshard), MPIEXEC (default mpirun).
#
# Timed region: the commit as `stshard save --json` reports it ("seconds": the
# wall time of sts_writer_commit, maximum over ranks; the ranks start it
# together; generating the model in memory is not timed).  For the two-step
# variant it holds the rank-file save, the consolidation and the removal of
# the rank files; "consolidate_seconds" is the consolidation's part.  Without
# -F no fsync is in the timed region (data may still be in the page cache
# when the clock stops, for both variants alike); with --fsync every file
# is MPI_File_sync'ed and the directory fsync'ed inside it.  Outputs are
# deleted (and, on disk, `sync`ed) between runs, outside the timed region.
# CPU: user + system seconds of the commit summed over the ranks ("cpu_seconds"),
# which a busy host distorts less than wall time (a rank spinning in an MPI wait
# still counts; the direct exchange and the writer sleep while they wait).
set -euo pipefail
cd "$(dirname "$0")/.."

model=llama:2GiB
ranks=2
repeats=3
strategies="tp col"
dirs=()
fsyncs=(no)
while getopts "m:n:r:t:d:Fh" opt; do
    case $opt in
    m) model=$OPTARG ;;
    n) ranks=$OPTARG ;;
    r) repeats=$OPTARG ;;
    t) strategies=$OPTARG ;;
    d) dirs+=("$OPTARG") ;;
    F) fsyncs=(no yes) ;;
    *) sed -n '2,14p' "$0"; exit 2 ;;
    esac
done
[ ${#dirs[@]} -eq 0 ] && dirs=(/dev/shm /tmp)
STSHARD=${STSHARD:-build/src/cli/stshard}
MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LC_ALL=C
[ -x "$STSHARD" ] || { echo "no stshard binary at $STSHARD (set STSHARD)" >&2; exit 2; }

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
json_num() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p"; }

settle() { # dir: after deletes, let a disk catch up before the next timed run
    case $1 in /dev/shm*) ;; *) sync; sleep 1 ;; esac
}

# One save; prints the JSON summary.  $1 work dir, $2 strategy, $3 fsync, $4.. mode flags.
run_save() {
    local work=$1 strategy=$2 fsync=$3
    shift 3
    local flag=()
    [ "$fsync" = yes ] && flag=(--fsync)
    "$MPIEXEC" -n "$ranks" --oversubscribe "$STSHARD" save "$@" --model "$model" \
        --strategy "$strategy" --json "${flag[@]}"
}

echo "model $model, $ranks ranks, $repeats runs per variant; $(nproc) cores; $(uname -r);" \
    "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stshard: $STSHARD; $("$MPIEXEC" --version 2>/dev/null | head -1)"
echo
printf '| dir | fsync | strategy | two-step s | of which consolidate s | direct s | direct GiB/s | direct / two-step | CPU s two-step | CPU s direct | CPU direct / two-step |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for dir in "${dirs[@]}"; do
    work=$dir/stshard-bench-direct.$$
    mkdir -p "$work"
    for fsync in "${fsyncs[@]}"; do
        for strategy in $strategies; do
            two=() cons=() dir_t=() two_c=() dir_c=() bytes=0
            for ((r = 0; r < repeats; r++)); do
                out=$(run_save "$work" "$strategy" "$fsync" "$work/shards" --consolidate "$work/hf")
                two+=("$(echo "$out" | json_num seconds)")
                two_c+=("$(echo "$out" | json_num cpu_seconds)")
                cons+=("$(echo "$out" | json_num consolidate_seconds)")
                rm -rf "$work/shards" "$work/hf"
                settle "$dir"
                out=$(run_save "$work" "$strategy" "$fsync" "$work/direct" --direct)
                dir_t+=("$(echo "$out" | json_num seconds)")
                dir_c+=("$(echo "$out" | json_num cpu_seconds)")
                bytes=$(echo "$out" | json_num bytes)
                rm -rf "$work/direct"
                settle "$dir"
            done
            t=$(printf '%s\n' "${two[@]}" | median)
            c=$(printf '%s\n' "${cons[@]}" | median)
            d=$(printf '%s\n' "${dir_t[@]}" | median)
            tc=$(printf '%s\n' "${two_c[@]}" | median)
            dc=$(printf '%s\n' "${dir_c[@]}" | median)
            printf '| %s | %s | %s | %.3f | %.3f | %.3f | %.2f | **%.2f** | %.3f | %.3f | %.2f |\n' \
                "$dir" "$fsync" "$strategy" "$t" "$c" "$d" "$(echo "$bytes / 1073741824 / $d" | bc -l)" \
                "$(echo "$d / $t" | bc -l)" "$tc" "$dc" "$(echo "$dc / $tc" | bc -l)"
            echo "  runs: two-step ${two[*]} (consolidate ${cons[*]}) | direct ${dir_t[*]}" >&2
            echo "  CPU:  two-step ${two_c[*]} | direct ${dir_c[*]}" >&2
        done
    done
    rm -rf "$work"
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
