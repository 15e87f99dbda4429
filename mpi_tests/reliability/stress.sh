#!/usr/bin/env bash
# stress.sh - scale, determinism and memory scenarios for `stshard
# consolidate` (and `stshard reshard` where it exists), checked for exact
# content, not only for success.
#
#   stress.sh SCENARIO --stshard EXE --gen GEN_MANY --work DIR [--mpiexec EXE]
#             [-- LAUNCHER FLAGS...]
#
#   many_tensors   100,000 tensors (+ a scalar) in 4 rank files, 8 ranks
#                  (oversubscribed on a 2-core machine)
#   many_ranks     1,000 rank files, 8 ranks; then reshard 1,000 -> 3 rank files
#   determinism    10 runs of one input at 1..8 ranks, buffer sizes from 64 KiB
#                  to 4 MiB, one and several output files: every run's files
#                  byte-identical to the first run's, and valid and exact
#   memory         a 512 MiB checkpoint consolidated with a 4 MiB buffer: the
#                  peak RSS of every rank stays below 64 MiB (an eighth of
#                  the data), as docs/reliability.md promises
set -u
scenario=$1
shift
exe="" gen="" work="" mpiexec=mpiexec limit=1200
while [ $# -gt 0 ]; do
    case $1 in
    --stshard) exe=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --mpiexec) mpiexec=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "stress.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
flags=("$@")
work="$work/$scenario"
failures=0
fail() {
    echo "FAIL $scenario: $*"
    failures=$((failures + 1))
}

run() { # np log command args...
    local np=$1 log=$2
    shift 2
    timeout -k 10 "$limit" "$mpiexec" -n "$np" "${flags[@]}" "$exe" "$@" >"$log" 2>&1
    local s=$?
    [ $s -eq 0 ] || { fail "$* at $np ranks: exit $s"; sed 's/^/    | /' "$log" | tail -20; }
    return $s
}

# Valid (stshard verify) and exact (every element, nothing lost or duplicated).
check_out() { # dir ranks tensors
    "$exe" verify "$1" >"$1.verify" 2>&1 || { fail "$1 does not verify"; tail -5 "$1.verify"; }
    "$gen" --check "$1" --ranks "$2" --tensors "$3" || fail "$1: content is wrong"
}

rm -rf "$work"
mkdir -p "$work"
case $scenario in
many_tensors)
    "$gen" --write "$work/in" --ranks 4 --tensors 100000 || exit 1
    run 8 "$work/cons.log" consolidate "$work/in" "$work/out" --max-file-size 2MB &&
        check_out "$work/out" 4 100000
    tail -1 "$work/cons.log"
    ;;
many_ranks)
    "$gen" --write "$work/in" --ranks 1000 --tensors 16 || exit 1
    run 8 "$work/cons.log" consolidate "$work/in" "$work/out" && check_out "$work/out" 1000 16
    tail -1 "$work/cons.log"
    if "$exe" reshard --help >/dev/null 2>&1; then
        run 3 "$work/reshard.log" reshard "$work/in" "$work/resharded" &&
            check_out "$work/resharded" 1000 16
        n=$(find "$work/resharded" -name 'shard-*.safetensors' | wc -l)
        [ "$n" -eq 3 ] || fail "reshard to 3 ranks wrote $n rank files"
    fi
    ;;
determinism)
    "$gen" --write "$work/in" --ranks 6 --tensors 20000 || exit 1
    nps=(1 2 3 4 5 6 7 8 8 3)
    bufs=(4MiB 64KiB 1MiB 256KiB 64KiB 4MiB 128KiB 2MiB 64KiB 512KiB)
    for split in "" "--max-file-size 256KB"; do
        ref=""
        for i in "${!nps[@]}"; do
            o="$work/out${split:+-split}-$i"
            # shellcheck disable=SC2086
            run "${nps[$i]}" "$o.log" consolidate "$work/in" "$o" --buffer-size "${bufs[$i]}" $split ||
                continue
            if [ -z "$ref" ]; then
                ref=$o
                check_out "$o" 6 20000
                continue
            fi
            (cd "$ref" && ls) >"$o.ref-names"
            (cd "$o" && ls) | cmp -s - "$o.ref-names" || fail "run $i: different file names"
            for f in "$ref"/*; do
                cmp "$f" "$o/$(basename "$f")" || fail "run $i (${nps[$i]} ranks, ${bufs[$i]}): $(basename "$f") differs"
            done
            "$exe" verify "$o" >/dev/null 2>&1 || fail "run $i: output does not verify"
        done
        echo "determinism${split:+ (split)}: $(ls "$ref" | wc -l) files, 10 runs compared"
    done
    ;;
memory)
    run 2 "$work/save.log" save "$work/in" --model llama:512MiB --strategy mesh2d || exit 1
    run 2 "$work/cons.log" consolidate "$work/in" "$work/out" --buffer-size 4MiB --json || exit 1
    "$exe" verify "$work/out" >/dev/null 2>&1 || fail "output does not verify"
    # The summary reports the peak resident set of the largest rank.
    rss=$(grep -o '"max_rss_bytes": *[0-9]*' "$work/cons.log" | head -1 | grep -o '[0-9]*$')
    if [ -z "$rss" ]; then
        fail "no peak RSS in the --json summary"
        cat "$work/cons.log"
    else
        echo "peak RSS: $rss bytes for 512 MiB of data (buffer 4 MiB)"
        [ "$rss" -lt $((64 * 1024 * 1024)) ] || fail "peak RSS $rss is not bounded by the buffer"
    fi
    rm -rf "$work/in" "$work/out"
    ;;
*)
    echo "stress.sh: unknown scenario $scenario" >&2
    exit 2
    ;;
esac
[ $failures -eq 0 ] && echo "ok $scenario"
[ $failures -eq 0 ]
