#!/usr/bin/env bash
# Installs a CUDA 13 toolchain from PyPI wheels into a cache folder, so that the `cuda` feature
# builds on a machine with neither a GPU nor a system CUDA. Prints the environment to build with:
#
#   eval "$(bash scripts/cuda-toolchain.sh)"   # then: cargo check --features cuda
#
# What it sets up under $SHARDLAB_CUDA_HOME (default ~/.cache/shardlab-cuda/13.0):
#   - nvcc, ptxas, cicc, the CUDA headers and CCCL (nvidia-cuda-nvcc, -nvvm, -crt, -cccl);
#   - the libraries the engine links to, from the wheels PyTorch's CUDA 13 builds use (cudart,
#     nvrtc, cublas + cublasLt, curand, nccl), with the unversioned names the linker looks for;
#   - a stub libcuda.so.1 for the link step only: every driver entry point returns
#     CUDA_ERROR_STUB_LIBRARY. It is never on a runtime library path; a GPU machine's driver
#     provides the real one.
# Idempotent: a complete install (marked by .complete) is reused.
set -euo pipefail

root="${SHARDLAB_CUDA_HOME:-$HOME/.cache/shardlab-cuda/13.0}"
# Compiler pins from the issue; the libraries are the versions torch 2.9's cu130 wheels pin, so a
# binary linked here loads against a PyTorch install's libraries (same sonames, no newer symbols).
wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
  nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.0.19 nvidia-curand==10.4.0.35
  nvidia-nccl-cu13==2.27.7
)

log() { echo "cuda-toolchain: $*" >&2; }

install() {
  local tmp="$root.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  log "installing ${#wheels[@]} CUDA 13 wheels into $root (about 1.4 GB, once)"
  # A virtualenv of our own: Debian's system pip refuses to install anything (PEP 668).
  python3 -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check --target "$tmp/wheels" "${wheels[@]}"
  rm -rf "$tmp/venv"

  local cu="$tmp/wheels/nvidia/cu13" nccl="$tmp/wheels/nvidia/nccl"
  [ -x "$cu/bin/nvcc" ] || { log "no nvcc in $cu/bin after the install"; exit 1; }
  # CUDA_HOME layout: bin/ (nvcc, ptxas), nvvm/, include/ (with nccl.h), lib64 -> lib.
  cp -n "$nccl/include/"*.h "$cu/include/"
  ln -s lib "$cu/lib64"
  (
    cd "$cu/lib"
    for lib in cudart nvrtc cublas cublasLt curand; do
      real=$(ls "lib$lib.so."* | grep -v -e alt -e builtins | head -1)
      ln -sf "$real" "lib$lib.so"
    done
    ln -sf ../../nccl/lib/libnccl.so.2 libnccl.so.2
    ln -sf libnccl.so.2 libnccl.so
  )
  make_stub_libcuda "$cu/lib/stubs"
  mv "$tmp/wheels" "$tmp/toolkit"
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  mv "$tmp/toolkit" "$root"
  rm -rf "$tmp"
  trap - EXIT
  touch "$root/.complete"
}

# The driver API's entry points, taken from the cudarc bindings the build uses (cuda.h's names
# are macros over versioned symbols; the bindings name the symbols themselves).
make_stub_libcuda() {
  local dir="$1" bindings
  bindings=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | tail -1)
  if [ -z "$bindings" ]; then
    (cd "$(dirname "$0")/.." && cargo fetch --quiet)
    bindings=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
  fi
  mkdir -p "$dir"
  {
    echo "/* Link-time stub of libcuda.so.1: every entry point returns CUDA_ERROR_STUB_LIBRARY (34). */"
    grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$bindings" | sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
      awk '{ printf "int %s(void) { return 34; }\n", $1 }'
  } >"$dir/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$dir/libcuda.so.1" "$dir/libcuda_stub.c"
  ln -sf libcuda.so.1 "$dir/libcuda.so"
}

[ -e "$root/.complete" ] || install

cu="$root/nvidia/cu13"
# What a build needs: nvcc on PATH (cudarc reads the CUDA version from `nvcc --version`), the
# toolkit root, one compute capability (H100/H200: sm_90), and the libraries plus the stub for
# the linker. LIBRARY_PATH is the link-time search path only.
cat <<ENV
export CUDA_HOME="$cu"
export CUDA_PATH="$cu"
export PATH="$cu/bin:\$PATH"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$cu/lib:$cu/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
ENV
