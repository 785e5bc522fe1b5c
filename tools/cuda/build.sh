#!/usr/bin/env bash
# Builds `target/release/lamarck` with the `cuda` feature on any Linux machine, GPU or not:
#
#   tools/cuda/build.sh [extra cargo args]
#
# 1. installs the pinned CUDA compiler from PyPI (tools/cuda/install.sh) unless `nvcc` is
#    already on PATH (a system CUDA toolkit is used as it is);
# 2. builds with cudarc switched from link-time to run-time loading of the CUDA libraries
#    (candle 0.11 asks cudarc for `dynamic-linking`, which makes a binary that cannot start
#    without libcuda.so.1, i.e. on any machine without an NVIDIA driver). The switch is a copy
#    of the cudarc crate from cargo's registry under target/cuda-toolkit/ whose
#    `dynamic-linking` feature means `dynamic-loading`, applied with `cargo --config patch...`;
#    nothing tracked is changed (Cargo.lock is restored).
# The binary then runs everywhere; `--device cuda` loads libcuda/cuBLAS/cuRAND/NVRTC when
# used and says so clearly when they or a GPU are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${LAMARCK_CUDA_DIR:-$PWD/target/cuda-toolkit}"
if ! command -v nvcc >/dev/null; then
  tools/cuda/install.sh
  # shellcheck disable=SC1091
  . "$DIR/env.sh"
fi
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
nvcc --version | tail -1

# The cudarc version Cargo.lock pins, fetched into cargo's registry.
cargo fetch --quiet
VERSION=$(awk '/^name = "cudarc"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
[[ -n "$VERSION" ]] || { echo "build.sh: cudarc is not in Cargo.lock" >&2; exit 1; }
SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$VERSION" | head -1)
PATCHED="$DIR/cudarc-$VERSION"
if [[ ! -f "$PATCHED/.patched" ]]; then
  rm -rf "$PATCHED"
  mkdir -p "$DIR"
  cp -r "$SRC" "$PATCHED"
  # `dynamic-linking` now enables `dynamic-loading` and selects nothing itself.
  sed -i 's/^dynamic-linking = \[\]$/dynamic-linking = ["dynamic-loading"]/' "$PATCHED/Cargo.toml"
  grep -q '^dynamic-linking = \["dynamic-loading"\]$' "$PATCHED/Cargo.toml" \
    || { echo "build.sh: cudarc $VERSION's Cargo.toml has no plain dynamic-linking feature" >&2; exit 1; }
  grep -rl 'feature = "dynamic-linking"' "$PATCHED" --include=*.rs \
    | xargs sed -i 's/feature = "dynamic-linking"/feature = "lamarck-never"/g'
  touch "$PATCHED/.patched"
fi

# candle-kernels links its MoE kernels against `-lcudart`; the PyPI runtime ships only
# libcudart.so.13 and libcudart_static.a. Link the static one (found through LIBRARY_PATH,
# which cc honours), so the binary needs no CUDA library until `--device cuda` loads them.
CUDART_STATIC=$(dirname "$(command -v nvcc)")/../lib/libcudart_static.a
if [[ -f "$CUDART_STATIC" ]]; then
  mkdir -p "$DIR/lib"
  ln -sf "$(realpath "$CUDART_STATIC")" "$DIR/lib/libcudart.a"
  export LIBRARY_PATH="$DIR/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
fi

cp Cargo.lock "$DIR/Cargo.lock.orig"
restore() { cp "$DIR/Cargo.lock.orig" Cargo.lock; }
trap restore EXIT
cargo build --release --features cuda \
  --config "patch.crates-io.cudarc.path=\"$PATCHED\"" "$@"
echo "built target/release/lamarck with CUDA (compute capability $CUDA_COMPUTE_CAP, run-time loaded)"
