#!/usr/bin/env bash
# bench-sweep.sh - `stshard bench` over rank counts and model sizes, into a
# CSV and two PNG plots (gnuplot): throughput against ranks and against model
# size, one panel per phase, with the raw MPI-IO baseline drawn in.
#
# Usage: scripts/bench-sweep.sh [-r RANKS] [-s SIZES] [-R RANK] [-S SIZE] [-i K]
#                               [-d DIR[:FLAGS]]... [-o OUT] [-m PRESET] [-t STRATEGY]
#   -r RANKS    rank counts of the rank sweep (default "1 2 4"), at model size -S
#   -s SIZES    model sizes of the size sweep (default "256MiB 512MiB 1GiB 2GiB"), at -R ranks
#   -R RANK     ranks of the size sweep (default 2)
#   -S SIZE     model size of the rank sweep (default 1GiB)
#   -i K        iterations of every run (default 3)
#   -d DIR      a series: where to run, with optional bench flags after a colon,
#               comma-separated (fsync, drop-caches); repeatable.  Default:
#               /dev/shm (tmpfs: the stack without the device) and
#               /var/tmp:fsync,drop-caches (the disk, synced, read cold)
#   -o OUT      output directory (default build/bench-sweep): sweep.csv, json/,
#               logs/, bench-vs-ranks.png, bench-vs-size.png
#   -m PRESET   model preset (default llama); -t STRATEGY (default tp)
#   -P          plot only: redraw the PNGs from an existing OUT/sweep.csv (same -d, -r, -S, -R)
# Env: STSHARD (default build/src/cli/stshard), MPIEXEC (default mpirun).
#
# Every run is `stshard bench --baseline`, so each point has the machine's raw
# MPI-IO write and read of the same byte count, measured in the same run.
# The CSV has one row per (series, sweep, ranks, size, operation) with the
# summary figures of the bench table and the 1-minute load average when the run
# began; the raw JSON of every run is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
sts_install_deps gnuplot-nox

ranks_list="1 2 4"
sizes_list="256MiB 512MiB 1GiB 2GiB"
size_ranks=2
rank_size=1GiB
iters=3
series=()
out=build/bench-sweep
preset=llama
strategy=tp
plot_only=0
while getopts "r:s:R:S:i:d:o:m:t:Ph" opt; do
    case $opt in
    r) ranks_list=$OPTARG ;;
    s) sizes_list=$OPTARG ;;
    R) size_ranks=$OPTARG ;;
    S) rank_size=$OPTARG ;;
    i) iters=$OPTARG ;;
    d) series+=("$OPTARG") ;;
    o) out=$OPTARG ;;
    m) preset=$OPTARG ;;
    t) strategy=$OPTARG ;;
    P) plot_only=1 ;;
    *) sed -n '2,27p' "$0"; exit 2 ;;
    esac
done
[ ${#series[@]} -eq 0 ] && series=(/dev/shm /var/tmp:fsync,drop-caches)
STSHARD=${STSHARD:-build/src/cli/stshard}
MPIEXEC=${MPIEXEC:-mpirun}
export LC_ALL=C
# "/var/tmp" + "fsync,drop-caches" -> "var-tmp+fsync+drop-caches" (no commas: it is a CSV field).
series_name() {
    local n
    n=$(sed 's|^/||; s|/|-|g' <<<"$1")
    [ -n "$2" ] && n=$n+$(tr ',' '+' <<<"$2")
    echo "$n"
}

# One bench run; appends its summary rows to the CSV.
run() { # series_name dir flags sweep ranks size
    local name=$1 dir=$2 flags=$3 sweep=$4 np=$5 size=$6 extra=() f tag log json
    IFS=, read -r -a f <<<"$flags"
    for x in "${f[@]}"; do [ -n "$x" ] && extra+=("--$x"); done
    tag=$name-$sweep-np$np-$size
    log=$out/logs/$tag.txt
    json=$out/json/$tag.json
    echo "== $tag: $MPIEXEC -n $np $STSHARD bench --model $preset:$size ${extra[*]}" >&2
    "$MPIEXEC" -n "$np" --oversubscribe "$STSHARD" bench --model "$preset:$size" \
        --strategy "$strategy" --iterations "$iters" --baseline --dir "$dir" --json "$json" \
        "${extra[@]}" >"$log" 2>&1 || { cat "$log" >&2; echo "run $tag failed" >&2; exit 1; }
    mbytes=$(sed -n 's/^Model .*, \([0-9]*\) bytes .*/\1/p' "$log")
    load1=$(sed -n 's/^Load average *: \([0-9.]*\) .*at the start.*/\1/p' "$log")
    # Summary rows: Operation Max Min Mean StdDev Mean(s) Bytes Ranks Iter Imbal(B) Imbal(t),
    # then "F of raw REF" for a phase compared with a baseline, or "-".
    awk -v pre="$name,$dir,$(tr ',' '+' <<<"$flags"),$sweep,$np,$preset:$size,$mbytes" \
        -v load1="$load1" -v OFS=, '
        /^Summary of all tests:/ { on = 1; getline; next }
        on && NF == 0 { on = 0 }
        on && NF >= 12 {
            frac = ($12 == "-") ? "" : $12
            ref = ($12 == "-") ? "" : $15
            print pre, $1, $2, $3, $4, $5, $6, $7, $9, $10, $11, frac, ref, load1
        }' "$log" >>"$csv"
    grep -m1 "^Model " "$log" | sed "s/^/   /" >&2
}

csv=$out/sweep.csv
if [ $plot_only -eq 1 ]; then
    [ -f "$csv" ] || { echo "-P: no $csv to plot" >&2; exit 2; }
else
    [ -x "$STSHARD" ] || { echo "no stshard binary at $STSHARD (build first, or set STSHARD)" >&2; exit 2; }
    mkdir -p "$out/json" "$out/logs"
    echo "series,dir,flags,sweep,ranks,model,model_bytes,operation,max_gib_s,min_gib_s,mean_gib_s,stddev_gib_s,mean_s,bytes,iterations,imbal_bytes,imbal_time,fraction_of_raw,raw_reference,load_avg_1min" >"$csv"

    for s in "${series[@]}"; do
        dir=${s%%:*}
        flags=""
        [ "$s" != "$dir" ] && flags=${s#*:}
        name=$(series_name "$dir" "$flags")
        for np in $ranks_list; do run "$name" "$dir" "$flags" ranks "$np" "$rank_size"; done
        for size in $sizes_list; do run "$name" "$dir" "$flags" size "$size_ranks" "$size"; done
    done
    echo "CSV: $csv" >&2
fi

# ---- plots -------------------------------------------------------------------
# Per series and sweep: one data file per operation, columns x, mean, min, max.
dat=$out/dat
mkdir -p "$dat"
names=()
for s in "${series[@]}"; do
    dir=${s%%:*}
    flags=""
    [ "$s" != "$dir" ] && flags=${s#*:}
    name=$(series_name "$dir" "$flags")
    names+=("$name")
    for op in save consolidate load fpp-write fpp-read shared-write shared-read; do
        awk -F, -v n="$name" -v o="$op" '$1 == n && $4 == "ranks" && $8 == o { print $5, $11, $10, $9 }' \
            "$csv" | sort -n >"$dat/$name-ranks-$op.dat"
        awk -F, -v n="$name" -v o="$op" '$1 == n && $4 == "size" && $8 == o {
            print $7 / 1048576, $11, $10, $9 }' "$csv" | sort -n >"$dat/$name-size-$op.dat"
    done
    # The raw reference of each phase, per point: the better of the two baselines
    # (write, read), and for consolidation, which reads and writes every byte,
    # a copy at those rates: 1 / (1/read + 1/write).
    for sw in ranks size; do
        paste -d' ' "$dat/$name-$sw-fpp-write.dat" "$dat/$name-$sw-shared-write.dat" |
            awk '{ print $1, ($2 > $6 ? $2 : $6) }' >"$dat/$name-$sw-raw-write.dat"
        paste -d' ' "$dat/$name-$sw-fpp-read.dat" "$dat/$name-$sw-shared-read.dat" |
            awk '{ print $1, ($2 > $6 ? $2 : $6) }' >"$dat/$name-$sw-raw-read.dat"
        paste -d' ' "$dat/$name-$sw-raw-write.dat" "$dat/$name-$sw-raw-read.dat" |
            awk '{ print $1, 1 / (1 / $2 + 1 / $4) }' >"$dat/$name-$sw-raw-copy.dat"
    done
done

plot() { # sweep xlabel png
    local sw=$1 xlabel=$2 png=$3 gp i
    gp=$out/plot-$sw.gp
    {
        echo "set terminal pngcairo size 1260,460 font 'DejaVu Sans,9'"
        echo "set output '$png'"
        echo "set multiplot layout 1,3 title 'stshard bench: mean GiB/s over $iters iterations (bars: min..max); dashed: raw MPI-IO baseline of the same run'"
        echo "set grid; set key below font ',8' samplen 2 maxrows 2; set ylabel 'GiB/s'; set xlabel '$xlabel'; set yrange [0:*]"
        [ "$sw" = ranks ] && echo "set logscale x 2; set xtics ($(tr ' ' ',' <<<"$ranks_list" | sed 's/,$//'))"
        # Sizes land just under the requested SIZE: label each point with the rounded MiB.
        [ "$sw" = size ] && awk -F, '$4 == "size" && !seen[$7]++ { m = $7 / 1048576
            t = t (n++ ? ", " : "") sprintf("\"%d\" %.4f", m + 0.5, m)
            lo = (lo == "" || m < lo) ? m : lo; hi = (m > hi) ? m : hi }
            END { printf "set logscale x 2; set xtics (%s); set xrange [%g:%g]\n", t, lo / 1.3, hi * 1.3 }' "$csv"
        [ "$sw" = ranks ] && echo "set xrange [0.8:$(tr ' ' '\n' <<<"$ranks_list" | sort -n | tail -1).0*1.25]"
        for pair in "save:write" "consolidate:copy" "load:read"; do
            op=${pair%%:*}
            ref=${pair#*:}
            echo "set title '$op (raw: $ref)'"
            printf "plot "
            i=1
            for n in "${names[@]}"; do
                printf "'%s' using 1:2:3:4 with yerrorlines lc %d pt 7 title '%s', " \
                    "$dat/$n-$sw-$op.dat" "$i" "$op, $n"
                printf "'%s' using 1:2 with lines dt 2 lc %d title 'raw $ref, %s', " \
                    "$dat/$n-$sw-raw-$ref.dat" "$i" "$n"
                i=$((i + 1))
            done
            echo ""
        done
        echo "unset multiplot"
    } | sed 's/, $//' >"$gp"
    gnuplot "$gp"
    echo "plot: $png" >&2
}
plot ranks "MPI ranks (model $preset:$rank_size)" "$out/bench-vs-ranks.png"
plot size "model size, MiB ($size_ranks ranks)" "$out/bench-vs-size.png"
