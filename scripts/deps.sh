#!/usr/bin/env bash
# Installs, with apt-get, whatever Debian packages stshard needs and the
# machine lacks.  Sourced by run.sh and test.sh; safe to run again.
set -euo pipefail

STS_PACKAGES=(build-essential cmake pkg-config clang libclang-rt-14-dev
              openmpi-bin libopenmpi-dev libcjson-dev libhdf5-dev python3)

sts_install_deps() {
    local missing=() p
    for p in "${STS_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "Installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Open MPI refuses to run as root and to oversubscribe a small machine unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
