#!/bin/bash
# bench-meta.sh - how consolidation metadata scales with the rank count
# (stshard issue 12): many tiny tensors, each split over every rank file, so
# the headers, the plan and the index - not the data - are the work.
#
#   scripts/bench-meta.sh [-f FILES] [-t TENSORS] [-n "1 2 4 8 16"] [-o OUTPUT.md]
#                         [-r REPS] [-b BUILD] [-d DIR] [-m "MPIEXEC ARGS"] [-c] [-l | -s]
#
#   -f FILES    rank files to consolidate (default 16)
#   -t TENSORS  tensors, each with one block in every file (default 30000),
#               so FILES x TENSORS blocks; written once by build/mpi_tests/gen_moe
#   -n LIST     rank counts P to run `stshard consolidate --json` with (default "1 2 4 8 16")
#   -o FILE     also write the Markdown table (with the command) to FILE
#   -r REPS     runs per P; the row shown is the one with the least wall time (default 1)
#   -b BUILD    build directory (default build)
#   -d DIR      where to make the work directory (default /dev/shm: tmpfs); removed at exit
#   -m LAUNCH   launcher and its options (default: mpirun --oversubscribe with the
#               shared-memory components, as scripts/bench-consolidate.sh)
#   -c          check every output value by value (gen_moe --check; not timed)
#   -l          measure `stshard load --batch 1MiB` instead, once with
#               --metadata replicated and once with distributed (the reader's
#               metadata; a small batch keeps the data buffer out of the RSS)
#   -s          measure the direct save instead (`save --direct`'s metadata):
#               build/mpi_tests/dsave_moe on P ranks, rank r holding block r of
#               each of the TENSORS tensors (so P x TENSORS blocks; -f is not
#               used); with -c the output is checked as a consolidation of P files
#
# Columns, per P:
#   wall s      mpirun start to exit (launch included), from outside
#   tool s      the tool's own time ("seconds" of --json: first header read to published index)
#   RSS MiB     peak resident set of the largest rank ("peak_rss_kib_max": ru_maxrss)
#   CPU s proc  user + system CPU of every rank's whole process, MPI_Init to the end,
#               summed over the ranks ("cpu_seconds_sum")
#   CPU s cons  the same for the sts_consolidate call alone ("cpu_seconds_consolidate_sum")
#   blocks      FILES x TENSORS
# With -l, per P and mode: wall s, the load pass's own "seconds", and the
# peak RSS of the largest rank ("max_vmhwm_kib").
# With -s, per P: wall s; the save's own time (create to free, max over
# ranks); the largest rank's peak RSS and its growth during the save (the
# peak minus the peak before it: MPI and the rank's blocks are in the
# latter); the save's CPU summed over the ranks; tensors; blocks.
# No fsync: the timed region never syncs (tmpfs by default).
set -euo pipefail

files=16 tensors=30000 ranks="1 2 4 8 16" out="" reps=1 build=build
parent=/dev/shm launch="" check=0 load=0 dsave=0
usage() {
    echo "usage: $0 [-f FILES] [-t TENSORS] [-n \"1 2 4 8 16\"] [-o OUTPUT.md] [-r REPS]" \
        "[-b BUILD] [-d DIR] [-m LAUNCH] [-c] [-l | -s]" >&2
    exit 2
}
while getopts "f:t:n:o:r:b:d:m:clsh" opt; do
    case $opt in
    f) files=$OPTARG ;;
    t) tensors=$OPTARG ;;
    n) ranks=$OPTARG ;;
    o) out=$OPTARG ;;
    r) reps=$OPTARG ;;
    b) build=$OPTARG ;;
    d) parent=$OPTARG ;;
    m) launch=$OPTARG ;;
    c) check=1 ;;
    l) load=1 ;;
    s) dsave=1 ;;
    *) usage ;;
    esac
done
[ $OPTIND -gt $# ] || usage
[ $((load + dsave)) -le 1 ] || { echo "$0: -l and -s exclude each other" >&2; exit 2; }
for n in "$files" "$tensors" "$reps" $ranks; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "$0: '$n' is not a positive count" >&2; exit 2; }
done
stshard=$build/src/cli/stshard gen=$build/mpi_tests/gen_moe dsave_moe=$build/mpi_tests/dsave_moe
[ -x "$stshard" ] && [ -x "$gen" ] && [ -x "$dsave_moe" ] ||
    { echo "$0: build $build first (stshard, gen_moe, dsave_moe)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
if [ -n "$launch" ]; then
    read -r -a mpi <<<"$launch"
else
    mpi=(mpirun --oversubscribe --mca pml ob1 --mca btl self,vader --mca osc pt2pt)
fi
dir=$(mktemp -d "$parent/stshard-bench-meta.XXXXXX")
trap 'rm -rf "$dir"' EXIT

now() { date +%s.%N; }
field() { # field NAME FILE: a number of the --json summary
    sed -nE "s/.*\"$1\": ([0-9.]+).*/\1/p" "$2"
}


# best_of P CMD...: runs CMD (with the launcher, P ranks) REPS times; keeps the
# --json of the fastest run in $dir/best.json and its wall time in $best.
best_of() {
    local p=$1 i s e wall
    shift
    best=""
    for ((i = 0; i < reps; i++)); do
        rm -rf "$dir/out"
        s=$(now)
        "${mpi[@]}" -n "$p" "$@" >"$dir/json"
        e=$(now)
        wall=$(echo "$e - $s" | bc)
        if [ -z "$best" ] || [ "$(echo "$wall < $best" | bc)" = 1 ]; then
            best=$wall
            cp "$dir/json" "$dir/best.json"
        fi
    done
}

# write_out COMMAND TABLE: the -o file (the command that made the table first).
write_out() {
    [ -z "$out" ] || { echo "\`$1\`" "($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r)):"
        echo; echo "$2"; } >"$out"
}

if [ $dsave = 1 ]; then
    table="| ranks | wall s | save s | peak RSS/rank MiB (max) | RSS growth in save MiB (max) | CPU s, all ranks (save) | tensors | blocks |
|---:|---:|---:|---:|---:|---:|---:|---:|"
    for p in $ranks; do
        best_of "$p" "$dsave_moe" "$dir/out" "$tensors"
        if [ $check = 1 ]; then
            "$gen" --check "$dir/out" "$p" "$tensors" >&2
        fi
        tool=$(field seconds "$dir/best.json")
        kib=$(field peak_rss_kib_max "$dir/best.json")
        grow=$(field rss_growth_kib_max "$dir/best.json")
        cpu=$(field cpu_seconds_save_sum "$dir/best.json")
        [ -n "$tool" ] && [ -n "$kib" ] && [ -n "$grow" ] && [ -n "$cpu" ] ||
            { echo "$0: P=$p: no figures from dsave_moe:" >&2; cat "$dir/best.json" >&2; exit 1; }
        row=$(printf '| %d | %.2f | %.2f | %.1f | %.1f | %.2f | %d | %d |' "$p" "$best" "$tool" \
            "$(echo "$kib / 1024" | bc -l)" "$(echo "$grow / 1024" | bc -l)" "$cpu" "$tensors" \
            $((p * tensors)))
        table+=$'\n'"$row"
        echo "$row" >&2
    done
    echo "$table"
    write_out "scripts/bench-meta.sh -s -t $tensors -n \"$ranks\" -r $reps" "$table"
    exit 0
fi

s=$(now)
"$gen" "$dir/in" "$files" "$tensors"
e=$(now)
echo "generated $files files x $tensors tensors in $(echo "$e - $s" | bc) s ($(du -sh "$dir/in" | cut -f1))" >&2

blocks=$((files * tensors))

if [ $load = 1 ]; then
    table="| ranks | metadata | wall s | load pass s | peak RSS/rank MiB (max) | blocks |
|---:|---|---:|---:|---:|---:|"
    for p in $ranks; do
        for mode in replicated distributed; do
            best_of "$p" "$stshard" load "$dir/in" --metadata $mode --batch 1MiB --json
            tool=$(field seconds "$dir/best.json")
            kib=$(field max_vmhwm_kib "$dir/best.json")
            [ -n "$tool" ] && [ -n "$kib" ] ||
                { echo "$0: P=$p: no figures in the --json summary:" >&2; cat "$dir/best.json" >&2; exit 1; }
            row=$(printf '| %d | %s | %.2f | %.2f | %.1f | %d |' "$p" $mode "$best" "$tool" \
                "$(echo "$kib / 1024" | bc -l)" "$blocks")
            table+=$'\n'"$row"
            echo "$row" >&2
        done
    done
    echo "$table"
    write_out "scripts/bench-meta.sh -l -f $files -t $tensors -n \"$ranks\" -r $reps" "$table"
    exit 0
fi

table="| ranks | wall s | tool s | peak RSS/rank MiB (max) | CPU s, all ranks (process) | CPU s, all ranks (consolidate) | blocks |
|---:|---:|---:|---:|---:|---:|---:|"
for p in $ranks; do
    best_of "$p" "$stshard" consolidate "$dir/in" "$dir/out" --json
    if [ $check = 1 ]; then
        "$gen" --check "$dir/out" "$files" "$tensors" >&2
    fi
    tool=$(field seconds "$dir/best.json")
    kib=$(field peak_rss_kib_max "$dir/best.json")
    cpu=$(field cpu_seconds_sum "$dir/best.json")
    ccpu=$(field cpu_seconds_consolidate_sum "$dir/best.json")
    [ -n "$tool" ] && [ -n "$kib" ] && [ -n "$cpu" ] && [ -n "$ccpu" ] ||
        { echo "$0: P=$p: no figures in the --json summary:" >&2; cat "$dir/best.json" >&2; exit 1; }
    row=$(printf '| %d | %.2f | %.2f | %.1f | %.2f | %.2f | %d |' "$p" "$best" "$tool" \
        "$(echo "$kib / 1024" | bc -l)" "$cpu" "$ccpu" "$blocks")
    table+=$'\n'"$row"
    echo "$row" >&2
done

echo "$table"
write_out "scripts/bench-meta.sh -f $files -t $tensors -n \"$ranks\" -r $reps" "$table"
