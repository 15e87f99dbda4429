#!/bin/sh
# json_ok.sh PYTHON COMMAND [ARGS...]: runs COMMAND, prints its output, and
# exits with COMMAND's status if its standard output is valid JSON (checked
# with PYTHON -m json.tool), else with 99.
set -u
py=$1
shift
out=$(mktemp "${TMPDIR:-/tmp}/json_ok.XXXXXX") || exit 2
"$@" >"$out"
status=$?
cat "$out"
if ! "$py" -m json.tool "$out" >/dev/null; then
    echo "json_ok.sh: output is not valid JSON"
    status=99
fi
rm -f "$out"
exit $status
