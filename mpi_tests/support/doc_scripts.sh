#!/bin/bash
# doc_scripts.sh SOURCE_DIR
#
# Every scripts/...sh and mpi_tests/...sh path that README.md or docs/*.md
# names must exist in the source tree and be executable, since the docs run
# them as `scripts/x.sh ...`: on the file system and, in a git checkout, in
# the index too (mode 100755), so a fresh clone gets the bit.
set -euo pipefail
src=$1
cd "$src"
docs=(README.md docs/*.md)
mapfile -t named < <(grep -ohE '(scripts|mpi_tests)/[A-Za-z0-9_./-]*\.sh' "${docs[@]}" | sort -u)
[ ${#named[@]} -gt 0 ] || { echo "FAIL: the docs name no script (pattern broken?)"; exit 1; }
git=0
git rev-parse --is-inside-work-tree >/dev/null 2>&1 && git=1
fail=0
for f in "${named[@]}"; do
    where=$(grep -lF "$f" "${docs[@]}" | tr '\n' ' ')
    if [ ! -f "$f" ]; then
        echo "FAIL: $f (named in $where) does not exist"
        fail=1
    elif [ ! -x "$f" ]; then
        echo "FAIL: $f (named in $where) is not executable"
        fail=1
    elif [ $git = 1 ]; then
        mode=$(git ls-files -s -- "$f" | cut -d' ' -f1)
        if [ -n "$mode" ] && [ "$mode" != 100755 ]; then
            echo "FAIL: $f (named in $where) has mode $mode in git (git update-index --chmod=+x)"
            fail=1
        fi
    fi
done
[ $fail = 0 ] && echo "doc_scripts: ${#named[@]} scripts named in the docs, all executable"
exit $fail
