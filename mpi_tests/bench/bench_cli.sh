#!/usr/bin/env bash
# bench_cli.sh WORK STSHARD PYTHON NP ITERS OPS KEEP CHECK -- LAUNCHER... [-- BENCH ARGS...]
#
# Runs `LAUNCHER STSHARD bench BENCH_ARGS --dir WORK/d --json WORK/report.json`
# and checks the structure of what it printed and wrote, never a timing:
#  - exit status 0;
#  - one line per iteration for every operation of OPS (comma-separated), and
#    one summary row each, with numbers in every column; no other operation;
#  - with CHECK 1, the read-back check line with 0 differing elements;
#  - with KEEP 1, the kept directory, whose rank files (and consolidated
#    checkpoint, when made) `stshard verify` accepts; else nothing left in WORK/d;
#  - the JSON report, by check_bench_json.py (when PYTHON is not empty).
set -euo pipefail
work=$1 stshard=$2 py=$3 np=$4 iters=$5 ops=$6 keep=$7 check=$8
shift 8
[ "$1" = "--" ] && shift
launcher=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do launcher+=("$1"); shift; done
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)

rm -rf "$work"
mkdir -p "$work/d"
out=$work/out.txt
fail() {
    cat "$out"
    echo "bench_cli: FAIL: $*"
    exit 1
}
status=0
"${launcher[@]}" "$stshard" bench "$@" --dir "$work/d" --json "$work/report.json" >"$out" 2>&1 ||
    status=$?
[ $status -eq 0 ] || fail "exit status $status"

num='[0-9]+(\.[0-9]+)?'
IFS=, read -r -a want <<<"$ops"
for op in "${want[@]}"; do
    n=$(grep -Ec "^$op +[0-9]+ +$num +$num +($num|-) +[0-9]+ +$num +$num$" "$out" || true)
    [ "$n" -eq "$iters" ] || fail "$n sample lines for $op, expected $iters"
    sed -n '/^Summary of all tests:/,/^$/p' "$out" |
        grep -Eq "^$op( +$num){10} +(-|$num of raw (write|read|copy))$" ||
        fail "no summary row for $op"
done
rows=$(sed -n '/^Summary of all tests:/,/^$/p' "$out" | grep -Ec "^[a-z-]+ +$num " || true)
[ "$rows" -eq ${#want[@]} ] || fail "$rows summary rows, expected ${#want[@]}"
grep -Eq "^Ranks +: $np$" "$out" || fail "the header does not say $np ranks"
if [ "$check" = 1 ]; then
    grep -Eq "^Check +: [1-9][0-9]* elements read back and compared, 0 differ$" "$out" ||
        fail "no clean check line"
fi
if [ "$keep" = 1 ]; then
    kept=$(sed -n 's/^Kept *: //p' "$out")
    [ -d "$kept/ranks" ] || fail "--keep, but no $kept/ranks"
    "$stshard" verify "$kept/ranks" >/dev/null || fail "the kept rank files do not verify"
    if [ -d "$kept/consolidated" ]; then
        "$stshard" verify "$kept/consolidated" >/dev/null ||
            fail "the kept consolidated checkpoint does not verify"
    fi
else
    [ -z "$(ls -A "$work/d")" ] || fail "files left in $work/d: $(ls -A "$work/d")"
fi
if [ -n "$py" ]; then
    "$py" "$here/check_bench_json.py" "$work/report.json" "$np" "$iters" "$ops" "$keep" "$check" ||
        fail "the JSON report"
fi
echo "bench_cli: ok"
