#!/usr/bin/env bash
# sweep.sh - runs one stshard tool over the bad-input sweep that
# make_bad_inputs.py wrote, and checks every case.
#
#   sweep.sh --tool verify|consolidate|reshard --cases DIR --work DIR --stshard EXE
#            [--mpiexec EXE] [--np N] [--part I/N] [--timeout S] [--launcher-every N]
#            [-- LAUNCHER FLAGS...]
#
# A malformed case passes when
#   - the tool exits 1 (invalid input): for the MPI tools, EVERY rank on its
#     own (rankwrap.sh records each rank's status), and the launcher too
#     (checked on every N-th case, default 10);
#   - the output names the expected error;
#   - nothing is left in the output directory: no final-named file, and no
#     temporary one either;
#   - it ends within the per-case timeout (a hang is reported as such).
# A control case (expected "-") passes when every rank exits 0 and, for the
# MPI tools, `stshard verify` accepts what was written.
# --part I/N runs every N-th case starting at the I-th (to spread the sweep
# over several ctest entries).
set -u
tool="" cases="" work="" exe="" mpiexec=mpiexec np=2 part=1/1 limit=120 every=10
while [ $# -gt 0 ]; do
    case $1 in
    --tool) tool=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --stshard) exe=$2; shift 2 ;;
    --mpiexec) mpiexec=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --part) part=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --launcher-every) every=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
flags=("$@")
here=$(cd "$(dirname "$0")" && pwd)
# When a rank exits non-zero, Open MPI's launcher aborts the job and kills
# the ranks still running, so a rank that has its error and is just leaving
# may never report its own status.  To see every rank's own exit status,
# the runs let every rank finish (orte_abort_on_non_zero_status=0; the
# launcher then exits 0, so its status is not used).  Every
# --launcher-every N-th malformed case runs a second time with the default
# abort, where the launcher's own exit status must be 1.
case $tool in
verify) letter=v ;;
consolidate) letter=c ;;
reshard) letter=r ;;
*) echo "sweep.sh: --tool must be verify, consolidate or reshard" >&2; exit 2 ;;
esac
[ -f "$cases/cases.tsv" ] || { echo "sweep.sh: no $cases/cases.tsv" >&2; exit 2; }
part_i=${part%/*} part_n=${part#*/}
mkdir -p "$work"

fails=0 ran=0 malformed=0 launched=0

fail() { # case, reason, log file
    echo "FAIL $tool $1: $2"
    [ -n "${3:-}" ] && sed 's/^/    | /' "$3" | head -40
    fails=$((fails + 1))
}

# Files left in an output directory after a failed run (none is allowed).
leftovers() {
    [ -d "$1" ] && find "$1" -mindepth 1 -print | sed "s|^$1/||" | tr '\n' ' '
}

# Commands read no stdin: the loop below reads the manifest from it.
run_verify() { # name expected log
    timeout -k 5 "$limit" "$exe" verify "$cases/$1" >"$3" 2>&1 </dev/null
}

run_mpi() { # name expected log out statusdir
    rm -rf "$4" "$5"
    mkdir -p "$5"
    OMPI_MCA_orte_abort_on_non_zero_status=0 timeout -k 5 "$limit" "$mpiexec" -n "$np" \
        "${flags[@]}" "$here/rankwrap.sh" "$5" "$exe" "$tool" "$cases/$1" "$4" >"$3" 2>&1 </dev/null
}

# The launcher's own exit status, with its default abort on a failing rank.
launcher_status() { # name out log
    rm -rf "$2"
    timeout -k 5 "$limit" "$mpiexec" -n "$np" "${flags[@]}" "$exe" "$tool" "$cases/$1" "$2" \
        >"$3" 2>&1 </dev/null
}

# Every rank recorded status want.
ranks_ok() { # statusdir want
    local r s
    for ((r = 0; r < np; r++)); do
        s=$(cat "$1/rank.$r" 2>/dev/null) || return 1
        [ "$s" = "$2" ] || return 1
    done
}

# The cases of this tool in this part, counted independently of the loop.
want=$(awk -F'\t' -v l="$letter" -v i="$part_i" -v n="$part_n" \
    '(NR - 1) % n == i - 1 && index($2, l) > 0' "$cases/cases.tsv" | wc -l)

idx=0
while IFS=$'\t' read -r name tools expected; do
    idx=$((idx + 1))
    [ $(((idx - 1) % part_n)) -eq $((part_i - 1)) ] || continue
    case $tools in *$letter*) ;; *) continue ;; esac
    ran=$((ran + 1))
    log="$work/$name.log" out="$work/$name.out" sdir="$work/$name.status"
    t0=$SECONDS
    if [ $tool = verify ]; then
        run_verify "$name" "$expected" "$log"
    else
        run_mpi "$name" "$expected" "$log" "$out" "$sdir"
    fi
    st=$?
    # timeout's statuses (124, 137) can also be a crashed tool's: go by the clock.
    if [ $((SECONDS - t0)) -ge "$limit" ]; then
        fail "$name" "did not finish within $limit s (hang)" "$log"
        continue
    fi
    if [ "$expected" = "-" ]; then
        if { [ $tool = verify ] && [ $st -ne 0 ]; } || { [ $tool != verify ] && ! ranks_ok "$sdir" 0; }; then
            fail "$name" "valid input: exit status $st, expected 0 on every rank" "$log"
        elif [ $tool != verify ] && ! "$exe" verify "$out" >"$log.verify" 2>&1 </dev/null; then
            fail "$name" "the output does not verify" "$log.verify"
        fi
        continue
    fi
    malformed=$((malformed + 1))
    if [ $tool != verify ]; then
        # Exit statuses come from the ranks themselves (see above).
        if ranks_ok "$sdir" 1; then st=1; else st=$(cat "$sdir"/rank.0 2>/dev/null || echo none); fi
    fi
    if [ $tool != verify ] && [ $((malformed % every)) -eq 1 ]; then
        launcher_status "$name" "$out" "$log.launcher"
        l=$?
        launched=$((launched + 1))
        [ $l -eq 1 ] || fail "$name" "the launcher exited $l, expected 1" "$log.launcher"
    fi
    if [ "$st" != 1 ]; then
        fail "$name" "exit status $st, expected 1 (invalid input)" "$log"
    elif [ $tool != verify ] && ! ranks_ok "$sdir" 1; then
        fail "$name" "not every rank exited 1: $(cd "$sdir" && grep -H . rank.* | tr '\n' ' ')" "$log"
    elif ! grep -Eq "(^|[^A-Za-z])($expected)([^A-Za-z]|\$)" "$log"; then
        fail "$name" "the output does not name $expected" "$log"
    elif [ $tool != verify ] && [ -n "$(leftovers "$out")" ]; then
        fail "$name" "left in the output directory: $(leftovers "$out")" "$log"
    fi
done <"$cases/cases.tsv"

echo "sweep: $tool, part $part: $ran cases ($malformed malformed; launcher status checked on $launched), $fails failed"
if [ "$part_n" = 1 ] && [ $malformed -lt 50 ]; then
    echo "FAIL: fewer than 50 malformed cases for $tool"
    fails=$((fails + 1))
fi
[ $ran -gt 0 ] && [ $ran -eq "$want" ] || { echo "FAIL: $ran cases ran, $want expected"; exit 1; }
[ $fails -eq 0 ]
