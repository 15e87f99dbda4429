#!/usr/bin/env bash
# bench-save.sh - save throughput of `stshard save` against dd of the same
# bytes, in the same run, with and without fsync, on tmpfs and on disk.
#
# Usage: scripts/bench-save.sh [-m MODEL] [-n RANKS] [-r REPEATS] [-d DIR]...
#   -m MODEL    synthetic model (default llama:2GiB)
#   -n RANKS    MPI ranks (default 2)
#   -r REPEATS  runs of each variant, interleaved dd/save (default 5); medians are reported
#   -d DIR      a directory to measure in (repeatable; default /dev/shm and /tmp)
# Env: STSHARD (the stshard binary; default build/src/cli/stshard), MPIEXEC (default mpirun).
#
# Timed regions: dd's own report (conv=fsync: its fsync is inside); the save's
# commit as `stshard save --json` reports it (--fsync: MPI_File_sync of every
# file and the directory fsync are inside; generating the model in memory is
# not).  Every dd and save file is deleted (and, on disk, `sync`ed) between
# runs, outside the timed regions.  Peak RSS per rank is VmHWM at the end of
# the save, reported against the rank's share of the model.
set -euo pipefail
cd "$(dirname "$0")/.."

model=llama:2GiB
ranks=2
repeats=5
dirs=()
while getopts "m:n:r:d:h" opt; do
    case $opt in
    m) model=$OPTARG ;;
    n) ranks=$OPTARG ;;
    r) repeats=$OPTARG ;;
    d) dirs+=("$OPTARG") ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
    esac
done
[ ${#dirs[@]} -eq 0 ] && dirs=(/dev/shm /tmp)
STSHARD=${STSHARD:-build/src/cli/stshard}
MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LC_ALL=C
[ -x "$STSHARD" ] || { echo "no stshard binary at $STSHARD (set STSHARD)" >&2; exit 2; }

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
json_num() { sed -n "s/.*\"$1\": \([0-9.e+-]*\).*/\1/p"; }
json_list() { sed -n "s/.*\"$1\": \[\([0-9, ]*\)\].*/\1/p" | tr -d ' '; }

# dd of `bytes` into $1 (one stream; bs=16M), seconds on stdout.
run_dd() { # file bytes fsync
    local count=$(( ($2 + 16777215) / 16777216 )) conv=()
    [ "$3" = yes ] && conv=(conv=fsync)
    dd if=/dev/zero of="$1" bs=16M count="$count" "${conv[@]}" 2>&1 |
        sed -n 's/.* copied, \([0-9.e+-]*\) s,.*/\1/p'
    rm -f "$1"
}

# `ranks` dd streams in parallel, each writing its share: the same bytes, the same parallelism.
run_dd_par() { # dir bytes fsync
    local each=$(( $2 / ranks )) t0 t1 pids=() i
    t0=$(date +%s.%N)
    for ((i = 0; i < ranks; i++)); do
        run_dd "$1/dd.$i" "$each" "$3" >/dev/null &
        pids+=($!)
    done
    wait "${pids[@]}"
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

settle() { # dir: after deletes, let a disk catch up before the next timed run
    case $1 in /dev/shm*) ;; *) sync; sleep 1 ;; esac
}

echo "model $model, $ranks ranks, $repeats runs per variant; $(nproc) cores; $(uname -r);" \
    "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stshard: $STSHARD; $(mpirun --version 2>/dev/null | head -1)"
echo
printf '| dir | fsync | save s | save GiB/s | dd s | dd GiB/s | save/dd | %dx dd s | save/%dx dd | peak RSS - share (MiB, max rank) |\n' "$ranks" "$ranks"
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for dir in "${dirs[@]}"; do
    work=$dir/stshard-bench.$$
    mkdir -p "$work"
    for fsync in no yes; do
        save_t=() dd_t=() par_t=() over=0 bytes=0
        flag=()
        [ $fsync = yes ] && flag=(--fsync)
        for ((r = 0; r < repeats; r++)); do
            out=$("$MPIEXEC" -n "$ranks" --oversubscribe "$STSHARD" save "$work/ckpt" \
                --model "$model" --json "${flag[@]}")
            bytes=$(echo "$out" | json_num bytes)
            save_t+=("$(echo "$out" | json_num seconds)")
            rss=$(echo "$out" | json_list vmhwm_kib)
            share=$(echo "$out" | json_list share_bytes)
            o=$(paste -d' ' <(tr , '\n' <<<"$rss") <(tr , '\n' <<<"$share") |
                awk '{d = $1 / 1024 - $2 / 1048576; if (d > m) m = d} END {printf "%.1f", m}')
            over=$(echo "$o $over" | awk '{print ($1 > $2) ? $1 : $2}')
            rm -rf "$work/ckpt"
            settle "$dir"
            dd_t+=("$(run_dd "$work/dd.bin" "$bytes" $fsync)")
            settle "$dir"
            par_t+=("$(run_dd_par "$work" "$bytes" $fsync)")
            settle "$dir"
        done
        s=$(printf '%s\n' "${save_t[@]}" | median)
        d=$(printf '%s\n' "${dd_t[@]}" | median)
        p=$(printf '%s\n' "${par_t[@]}" | median)
        gib=$(echo "$bytes / 1073741824" | bc -l)
        printf '| %s | %s | %.3f | %.2f | %.3f | %.2f | **%.2f** | %.3f | %.2f | %s |\n' \
            "$dir" "$fsync" "$s" "$(echo "$gib / $s" | bc -l)" "$d" "$(echo "$gib / $d" | bc -l)" \
            "$(echo "$d / $s" | bc -l)" "$p" "$(echo "$p / $s" | bc -l)" "$over"
        echo "  runs: save ${save_t[*]} | dd ${dd_t[*]} | ${ranks}x dd ${par_t[*]}" >&2
    done
    rm -rf "$work"
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
