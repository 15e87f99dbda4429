#!/bin/bash
# bench-consolidate.sh - stshard consolidate against the copy baseline.
#
#   scripts/bench-consolidate.sh [--build DIR] [--reps N] [--ranks P] [--shm DIR] [--disk DIR]
#                                [--no-8g] [--default-launch]
#
# Cases (rank files from the test generator, build/mpi_tests/par_consolidate_big):
#   mixed  2 GiB: row-sharded F32, column-sharded BF16 and F32, embedding, norms; 2 rank files
#   thin   one [1048576, 128] BF16 tensor (256 MiB) sharded by column over 2 rank files
#   8g     the mixed model with 50 layers (~8.4 GiB), for peak RSS per rank (shm only)
# For mixed and thin, on tmpfs (--shm) and on disk (--disk), each repetition times,
# interleaved and from a fresh output:
#   copy   cat RANKFILES > one; sync
#   stshard mpirun -n P stshard consolidate IN OUT; sync
# Both timings include the final `sync`; stshard's includes the mpirun launch.  The tool's
# own time (its --json "seconds", from the first header read to the published index) is
# reported too.  Inputs are warm in the page cache for both (they were just written).
# Prints min and median over the repetitions, the ratio of the minima, and the least CPU time
# (user + system of every process: cat; mpirun and all ranks) - the figure a busy shared host
# disturbs least.  A Markdown table goes to bench-consolidate.md in the current directory.
#
# Launch: a single node does not need the network stack, so by default mpirun selects
# the shared-memory components (--mca pml ob1 --mca btl self,vader --mca osc pt2pt),
# which cuts Open MPI's start-up from ~0.5 s to ~0.2 s here.  --default-launch uses
# Open MPI's defaults instead.
set -euo pipefail

build=build reps=5 ranks=2 shm=/dev/shm/stshard-bench disk=/tmp/stshard-bench do8g=1 tuned=1
while [ $# -gt 0 ]; do
    case $1 in
    --build) build=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --shm) shm=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --no-8g) do8g=0; shift ;;
    --default-launch) tuned=0; shift ;;
    *) echo "usage: $0 [--build DIR] [--reps N] [--ranks P] [--shm DIR] [--disk DIR] [--no-8g] [--default-launch]" >&2; exit 2 ;;
    esac
done
stshard=$build/src/cli/stshard
gen=$build/mpi_tests/par_consolidate_big
[ -x "$stshard" ] && [ -x "$gen" ] || { echo "build $build first (stshard, par_consolidate_big)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
mpi=(mpirun --oversubscribe)
[ $tuned = 1 ] && mpi+=(--mca pml ob1 --mca btl self,vader --mca osc pt2pt)
trap 'rm -rf "$shm" "$disk"' EXIT

now() { date +%s.%N; }
stats() { # min median of the numbers on stdin
    sort -g | awk '{a[NR]=$1} END {printf "%.3f %.3f\n", a[1], a[int((NR+1)/2)]}'
}

# cpu_of FILE: user + system seconds that /usr/bin/time -f "%U %S" wrote into FILE.
cpu_of() { awk '{print $1 + $2}' "$1"; }

# run_case NAME DIR: interleaved copy / stshard repetitions on the rank files in DIR/in.
run_case() {
    local name=$1 dir=$2 copy=() tool=() inside=() ccpu=() tcpu=() s e
    for ((i = 0; i < reps; i++)); do
        rm -f "$dir/copy.out"; sync
        s=$(now)
        /usr/bin/time -o "$dir/cpu" -f "%U %S" sh -c "cat $dir/in/*.safetensors >$dir/copy.out"
        sync; e=$(now)
        copy+=("$(echo "$e - $s" | bc)"); ccpu+=("$(cpu_of "$dir/cpu")")
        rm -f "$dir/copy.out"
        rm -rf "$dir/out"; sync
        s=$(now)
        /usr/bin/time -o "$dir/cpu" -f "%U %S" \
            "${mpi[@]}" -n "$ranks" "$stshard" consolidate "$dir/in" "$dir/out" --json >"$dir/json"
        sync; e=$(now)
        tool+=("$(echo "$e - $s" | bc)"); tcpu+=("$(cpu_of "$dir/cpu")")
        inside+=("$(sed -E 's/.*"seconds": ([0-9.]+).*/\1/' "$dir/json")")
        rm -rf "$dir/out"
    done
    read -r cmin cmed < <(printf '%s\n' "${copy[@]}" | stats)
    read -r tmin tmed < <(printf '%s\n' "${tool[@]}" | stats)
    read -r imin imed < <(printf '%s\n' "${inside[@]}" | stats)
    read -r ccmin _ < <(printf '%s\n' "${ccpu[@]}" | stats)
    read -r tcmin _ < <(printf '%s\n' "${tcpu[@]}" | stats)
    ratio=$(echo "scale=2; $tmin / $cmin" | bc)
    printf '%-11s copy %6.3f / %6.3f s   stshard %6.3f / %6.3f s (tool %6.3f / %6.3f s)   ratio %s   cpu %.2f vs %.2f s\n' \
        "$name" "$cmin" "$cmed" "$tmin" "$tmed" "$imin" "$imed" "$ratio" "$ccmin" "$tcmin"
    echo "| $name | $cmin / $cmed | $tmin / $tmed | $imin / $imed | $ratio | $ccmin | $tcmin |" >>bench-consolidate.md
}

{
    echo "stshard consolidate vs cat+sync: $ranks ranks, $reps repetitions (min / median, seconds);"
    echo "launch: ${mpi[*]}; $(nproc) cores; $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| case | copy: cat + sync | stshard + sync (incl. mpirun) | stshard's own time | ratio of minima | CPU copy | CPU stshard |"
    echo "|---|---|---|---|---|---|---|"
} >bench-consolidate.md

for where in shm disk; do
    base=${!where}
    for model in mixed thin; do
        rm -rf "$base/$model"; mkdir -p "$base/$model"
        "${mpi[@]}" -n 1 "$gen" "gen-$model" "$base/$model/in" >/dev/null
        sync
        run_case "$model/$where" "$base/$model"
        rm -rf "$base/$model"
    done
done

if [ $do8g = 1 ]; then
    rm -rf "$shm/8g"; mkdir -p "$shm/8g"
    "${mpi[@]}" -n 1 "$gen" gen-8g "$shm/8g/in" >/dev/null
    "${mpi[@]}" -n "$ranks" "$stshard" consolidate "$shm/8g/in" "$shm/8g/out" --json >"$shm/8g/json"
    rss=$(sed -E 's/.*"max_rss_bytes": ([0-9]+).*/\1/' "$shm/8g/json")
    bytes=$(sed -E 's/.*"bytes": ([0-9]+).*/\1/' "$shm/8g/json")
    secs=$(sed -E 's/.*"seconds": ([0-9.]+).*/\1/' "$shm/8g/json")
    line=$(printf '8 GiB model (%s bytes) on tmpfs, %s ranks: %.2f s, peak RSS per rank %.1f MiB' \
        "$bytes" "$ranks" "$secs" "$(echo "$rss / 1048576" | bc -l)")
    echo "$line"
    { echo; echo "$line"; } >>bench-consolidate.md
    rm -rf "$shm/8g"
fi
