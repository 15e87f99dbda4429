#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on a generated
# model: a small checkpoint is written, then inspected and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
sts_install_deps

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=ON >/dev/null
cmake --build build -j "$(nproc)"
out=${STS_RUN_DIR:-$(mktemp -d /tmp/stshard-run.XXXXXX)}
build/mpi_tests/gen_checkpoint "$out/demo.safetensors"
build/src/cli/stshard inspect "$out/demo.safetensors"
build/src/cli/stshard verify "$out/demo.safetensors"
echo "run.sh: checkpoint in $out"
