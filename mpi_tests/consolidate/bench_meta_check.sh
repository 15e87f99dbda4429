#!/bin/bash
# bench_meta_check.sh SOURCE_DIR BUILD_DIR WORKDIR -- MPIEXEC [ARGS...]
#
# scripts/bench-meta.sh on a small case (16 files x 2000 tensors, P = 1 2 4,
# every output checked value by value): the table it prints and the one it
# writes with -o must be the same, with one well-formed row per P in order -
# positive figures, blocks = 16 x 2000.  Then -l (the reader's metadata,
# `stshard load`): two rows per P, replicated then distributed.  Then -s (the
# direct save of the same model, 3000 tensors, P = 1 2 3, each output checked
# value by value): one row per P, blocks = P x 3000.  Never a timing.
set -euo pipefail
src=$1 build=$2 work=$3
shift 4
launch="$*"
rm -rf "$work"
mkdir -p "$work"

# run_bench NAME COMMAND ARGS...: scripts/bench-meta.sh ARGS, its table printed
# to $work/NAME-stdout.md and written with -o to $work/NAME.md, which must start
# with COMMAND (the command line as given) and hold the same table.
run_bench() {
    local name=$1 cmd=$2
    shift 2
    "$src/scripts/bench-meta.sh" "$@" -b "$build" -d "$work" -o "$work/$name.md" -m "$launch" \
        >"$work/$name-stdout.md"
    cat "$work/$name.md"
    head -n 1 "$work/$name.md" | grep -qF "\`$cmd " ||
        { echo "FAIL: no command line '$cmd' in the -o file $name.md"; exit 1; }
    grep '^|' "$work/$name.md" | cmp - "$work/$name-stdout.md" ||
        { echo "FAIL: the -o table of $name differs from the printed one"; exit 1; }
}
run_bench table 'scripts/bench-meta.sh -f 16 -t 2000 -n "1 2 4"' -f 16 -t 2000 -n "1 2 4" -c
awk -F'|' -v want="1 2 4" -v blocks=32000 '
    function fail(msg) { print "FAIL: line " NR ": " msg; bad = 1; exit 1 }
    NR == 1 { if ($2 !~ /ranks/ || NF != 9) fail("bad header: " $0); next }
    NR == 2 { if ($0 != "|---:|---:|---:|---:|---:|---:|---:|") fail("bad rule: " $0); next }
    {
        if (NF != 9) fail("not 7 columns: " $0)
        split(want, p, " ")
        if ($2 + 0 != p[NR - 2]) fail("ranks " $2 ", expected " p[NR - 2])
        for (i = 3; i <= 7; i++)
            if ($i !~ /^ [0-9]+\.[0-9]+ $/ || $i + 0 <= 0) fail("column " i - 1 " is not a positive number: " $0)
        if ($8 + 0 != blocks) fail("blocks " $8 ", expected " blocks)
        rows++
    }
    END { if (!bad && rows != 3) { print "FAIL: " rows " rows, expected 3"; exit 1 } }
' "$work/table-stdout.md"
run_bench load 'scripts/bench-meta.sh -l -f 16 -t 2000 -n "1 2"' -l -f 16 -t 2000 -n "1 2"
awk -F'|' -v blocks=32000 '
    function fail(msg) { print "FAIL: -l line " NR ": " msg; bad = 1; exit 1 }
    NR == 1 { if ($2 !~ /ranks/ || $3 !~ /metadata/ || NF != 8) fail("bad header: " $0); next }
    NR == 2 { if ($0 != "|---:|---|---:|---:|---:|---:|") fail("bad rule: " $0); next }
    {
        if (NF != 8) fail("not 6 columns: " $0)
        if ($2 + 0 != int((NR - 1) / 2)) fail("ranks " $2 ", expected " int((NR - 1) / 2))
        if ($3 != (NR % 2 ? " replicated " : " distributed ")) fail("mode " $3)
        for (i = 4; i <= 6; i++)
            if ($i !~ /^ [0-9]+\.[0-9]+ $/ || $i + 0 <= 0) fail("column " i - 1 " is not a positive number: " $0)
        if ($7 + 0 != blocks) fail("blocks " $7 ", expected " blocks)
        rows++
    }
    END { if (!bad && rows != 4) { print "FAIL: " rows " -l rows, expected 4"; exit 1 } }
' "$work/load-stdout.md"
run_bench dsave 'scripts/bench-meta.sh -s -t 3000 -n "1 2 3"' -s -t 3000 -n "1 2 3" -c
awk -F'|' '
    function fail(msg) { print "FAIL: -s line " NR ": " msg; bad = 1; exit 1 }
    NR == 1 { if ($2 !~ /ranks/ || $4 !~ /save s/ || NF != 10) fail("bad header: " $0); next }
    NR == 2 { if ($0 != "|---:|---:|---:|---:|---:|---:|---:|---:|") fail("bad rule: " $0); next }
    {
        if (NF != 10) fail("not 8 columns: " $0)
        if ($2 + 0 != NR - 2) fail("ranks " $2 ", expected " NR - 2)
        for (i = 3; i <= 7; i++)
            if ($i !~ /^ [0-9]+\.[0-9]+ $/ || ($i + 0 <= 0 && i != 6)) fail("column " i - 1 " is not a positive number: " $0)
        if ($8 + 0 != 3000 || $9 + 0 != 3000 * (NR - 2)) fail("tensors/blocks " $8 $9)
        rows++
    }
    END { if (!bad && rows != 3) { print "FAIL: " rows " -s rows, expected 3"; exit 1 } }
' "$work/dsave-stdout.md"
ls "$work" | grep -q stshard-bench-meta && { echo "FAIL: work directory left behind"; exit 1; }
rm -rf "$work"
echo "bench_meta_check: ok"
