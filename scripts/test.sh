#!/usr/bin/env bash
# Installs what is missing, builds with warnings as errors, and runs every
# test: the main build, then the ASan+UBSan build, which also builds the
# libFuzzer harnesses and runs their smoke runs beside its other tests.
# Both test builds compile in fault injection (STS_FAULT_INJECTION, src/fault.c).
# Usage: scripts/test.sh [--quick]   (--quick: main build only)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
sts_install_deps

jobs=$(nproc)
quick=0
[ "${1:-}" = "--quick" ] && quick=1

run_build() { # dir, extra cmake args...
    local dir=$1; shift
    cmake -S . -B "$dir" -DSTS_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
        { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j "$jobs"
}

mkdir -p build-ci
echo "== main build (gcc, -Werror)"
run_build build-ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTS_FAULT_INJECTION=ON
(cd build-ci && ctest --output-on-failure -j "$jobs")
[ $quick -eq 1 ] && exit 0

echo "== ASan+UBSan build with the libFuzzer smoke runs (clang)"
mkdir -p build-asan
# -O1, as AddressSanitizer's documentation advises: -O0 code makes the MPI tests
# up to twice as slow (par_direct_np4: 28 s at -O0, 13 s at -O1).
run_build build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DSTS_SANITIZE=ON \
    -DSTS_FAULT_INJECTION=ON -DSTS_FUZZ=ON
(cd build-asan && ctest --output-on-failure -j "$jobs" -LE "bench|long")
