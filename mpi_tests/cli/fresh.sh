#!/bin/sh
# fresh.sh DIR COMMAND [ARGS...]: empties DIR, then runs COMMAND (a fixture
# generator writing into DIR), so stale files of an earlier run never linger.
set -eu
dir=$1
shift
rm -rf "$dir"
mkdir -p "$dir"
exec "$@"
