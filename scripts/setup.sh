#!/usr/bin/env bash
# Installs what building and testing shardlab needs on a Debian/Ubuntu machine, once.
# Idempotent: only missing tools are installed.
set -euo pipefail

need=()
command -v cargo >/dev/null || { echo "setup: cargo is missing: install Rust (rustup) first" >&2; exit 1; }
command -v cc >/dev/null || need+=(build-essential)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# The OpenAI SDK test installs the SDK into a virtualenv of its own.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v npm >/dev/null || need+=(npm)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v sha256sum >/dev/null || need+=(coreutils)
# MPI: ranks come from mpirun/srun; the mpi crate's bindings need the headers and libclang.
command -v mpirun >/dev/null || need+=(openmpi-bin)
[ -e /usr/include/x86_64-linux-gnu/openmpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] ||
  dpkg -s libopenmpi-dev >/dev/null 2>&1 || need+=(libopenmpi-dev)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)

if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "setup: ok"
