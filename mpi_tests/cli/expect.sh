#!/bin/sh
# expect.sh STATUS [-m REGEX]... [-n REGEX]... [-f REGEX FILE]... -- COMMAND [ARGS...]
#
# Runs COMMAND, then fails unless its exit status is STATUS, its combined
# stdout+stderr matches every -m REGEX (grep -E), matches no -n REGEX, and
# each FILE of -f contains REGEX.  The output is shown on failure.
set -u
want=$1
shift
must=""
mustnot=""
files=""
nl='
'
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
    -m) must="$must$2$nl"; shift 2 ;;
    -n) mustnot="$mustnot$2$nl"; shift 2 ;;
    -f) files="$files$2$nl$3$nl"; shift 3 ;;
    *) echo "expect.sh: bad option $1" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] && shift
out=$(mktemp "${TMPDIR:-/tmp}/expect.XXXXXX") || exit 2
"$@" >"$out" 2>&1
got=$?
fail=0
if [ "$got" != "$want" ]; then
    echo "FAIL: exit status $got, expected $want"
    fail=1
fi
while IFS= read -r re; do
    [ -z "$re" ] && continue
    if ! grep -Eq -- "$re" "$out"; then
        echo "FAIL: output does not match: $re"
        fail=1
    fi
done <<EOT
$must
EOT
while IFS= read -r re; do
    [ -z "$re" ] && continue
    if grep -Eq -- "$re" "$out"; then
        echo "FAIL: output matches: $re"
        fail=1
    fi
done <<EOT
$mustnot
EOT
while IFS= read -r re && IFS= read -r f; do
    if ! grep -Eq -- "$re" "$f" 2>/dev/null; then
        echo "FAIL: file $f does not match: $re"
        fail=1
    fi
done <<EOT
$files
EOT
echo "--- $* (exit $got)"
cat "$out"
rm -f "$out"
exit $fail
