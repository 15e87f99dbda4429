#!/usr/bin/env bash
# sweep.sh - runs one stshard tool over the bad-input sweep that
# make_bad_inputs.py wrote, and checks every case.
#
#   sweep.sh --tool verify|consolidate|reshard --cases DIR --work DIR --stshard EXE
#            [--mpiexec EXE] [--np N] [--part I/N] [--timeout S] [-- LAUNCHER FLAGS...]
#
# A malformed case passes when
#   - the tool exits 1 (invalid input): for the MPI tools, the launcher AND
#     every rank (each rank's status is recorded by rankwrap.sh);
#   - the output names the expected error;
#   - nothing is left in the output directory: no final-named file, and no
#     temporary one either;
#   - it ends within the per-case timeout (a hang is reported as such).
# A control case (expected "-") passes when every rank exits 0 and, for the
# MPI tools, `stshard verify` accepts what was written.
# --part I/N runs every N-th case starting at the I-th (to spread the sweep
# over several ctest entries).
set -u
tool="" cases="" work="" exe="" mpiexec=mpiexec np=2 part=1/1 limit=120
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
    --) shift; break ;;
    *) echo "sweep.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
flags=("$@")
here=$(cd "$(dirname "$0")" && pwd)
case $tool in
verify) letter=v ;;
consolidate) letter=c ;;
reshard) letter=r ;;
*) echo "sweep.sh: --tool must be verify, consolidate or reshard" >&2; exit 2 ;;
esac
[ -f "$cases/cases.tsv" ] || { echo "sweep.sh: no $cases/cases.tsv" >&2; exit 2; }
part_i=${part%/*} part_n=${part#*/}
mkdir -p "$work"

fails=0 ran=0 malformed=0

fail() { # case, reason, log file
    echo "FAIL $tool $1: $2"
    [ -n "${3:-}" ] && sed 's/^/    | /' "$3" | head -40
    fails=$((fails + 1))
}

# Files left in an output directory after a failed run (none is allowed).
leftovers() {
    [ -d "$1" ] && find "$1" -mindepth 1 -print | sed "s|^$1/||" | tr '\n' ' '
}

run_verify() { # name expected log
    timeout -k 5 "$limit" "$exe" verify "$cases/$1" >"$3" 2>&1
}

run_mpi() { # name expected log out statusdir
    rm -rf "$4" "$5"
    mkdir -p "$5"
    timeout -k 5 "$limit" "$mpiexec" -n "$np" "${flags[@]}" "$here/rankwrap.sh" "$5" \
        "$exe" "$tool" "$cases/$1" "$4" >"$3" 2>&1
}

# Every rank recorded status want.
ranks_ok() { # statusdir want
    local r s
    for ((r = 0; r < np; r++)); do
        s=$(cat "$1/rank.$r" 2>/dev/null) || return 1
        [ "$s" = "$2" ] || return 1
    done
}

idx=0
while IFS=$'\t' read -r name tools expected; do
    idx=$((idx + 1))
    [ $(((idx - 1) % part_n)) -eq $((part_i - 1)) ] || continue
    case $tools in *$letter*) ;; *) continue ;; esac
    ran=$((ran + 1))
    log="$work/$name.log" out="$work/$name.out" sdir="$work/$name.status"
    if [ $tool = verify ]; then
        run_verify "$name" "$expected" "$log"
    else
        run_mpi "$name" "$expected" "$log" "$out" "$sdir"
    fi
    st=$?
    if [ $st -eq 124 ] || [ $st -eq 137 ]; then
        fail "$name" "did not finish within $limit s (hang)" "$log"
        continue
    fi
    if [ "$expected" = "-" ]; then
        if [ $st -ne 0 ] || { [ $tool != verify ] && ! ranks_ok "$sdir" 0; }; then
            fail "$name" "valid input: exit status $st, expected 0 on every rank" "$log"
        elif [ $tool != verify ] && ! "$exe" verify "$out" >"$log.verify" 2>&1; then
            fail "$name" "the output does not verify" "$log.verify"
        fi
        continue
    fi
    malformed=$((malformed + 1))
    if [ $st -ne 1 ]; then
        fail "$name" "exit status $st, expected 1 (invalid input)" "$log"
    elif [ $tool != verify ] && ! ranks_ok "$sdir" 1; then
        fail "$name" "not every rank exited 1: $(cd "$sdir" && grep -H . rank.* | tr '\n' ' ')" "$log"
    elif ! grep -Eq "(^|[^A-Za-z])($expected)([^A-Za-z]|\$)" "$log"; then
        fail "$name" "the output does not name $expected" "$log"
    elif [ $tool != verify ] && [ -n "$(leftovers "$out")" ]; then
        fail "$name" "left in the output directory: $(leftovers "$out")" "$log"
    fi
done <"$cases/cases.tsv"

echo "sweep: $tool, part $part: $ran cases ($malformed malformed), $fails failed"
if [ "$part_n" = 1 ] && [ $malformed -lt 50 ]; then
    echo "FAIL: fewer than 50 malformed cases for $tool"
    fails=$((fails + 1))
fi
[ $ran -gt 0 ] || { echo "FAIL: no case ran"; exit 1; }
[ $fails -eq 0 ]
