#!/usr/bin/env bash
# Builds `target/release/lamarck` with the `cuda` feature on any Linux machine, GPU or not:
#
#   tools/cuda/build.sh [extra cargo args]
#   LAMARCK_CUDA_PROFILE=dev tools/cuda/build.sh    # target/debug/lamarck (what CI builds)
#
# 1. installs the pinned CUDA compiler from PyPI (tools/cuda/install.sh) unless `nvcc` is
#    already on PATH (a system CUDA toolkit is used as it is);
# 2. builds against patched copies of two registry crates under target/cuda-toolkit/, applied
#    with `cargo --config patch...`; nothing tracked is changed (Cargo.lock is restored):
#    - cudarc: link-time loading of the CUDA libraries switched to run-time loading (candle
#      0.11 asks for `dynamic-linking`, which makes a binary that cannot start without
#      libcuda.so.1, i.e. on any machine without an NVIDIA driver);
#    - candle-kernels: without candle's quantized MoE/GGUF kernels (a deliberate difference
#      from upstream candle; see patch_candle_kernels below).
# The binary then runs everywhere; `--device cuda` loads libcuda/cuBLAS/cuRAND/NVRTC when
# used and says so clearly when they or a GPU are missing.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
DIR="${LAMARCK_CUDA_DIR:-$PWD/target/cuda-toolkit}"
if ! command -v nvcc >/dev/null; then
  tools/cuda/install.sh
  # shellcheck disable=SC1091
  . "$DIR/env.sh"
fi
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
PROFILE="${LAMARCK_CUDA_PROFILE:-release}"
nvcc --version | tail -1

# A copy of the registry crate NAME at the version Cargo.lock pins, under $DIR, changed by the
# function patch_NAME; re-made whenever that function changes (its text is the marker).
cargo fetch --quiet
patched_copy() {
  local name=$1 version src copy marker
  version=$(awk -v n="name = \"$name\"" '$0 == n {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
  [[ -n "$version" ]] || { echo "build.sh: $name is not in Cargo.lock" >&2; exit 1; }
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$name-$version" | head -1)
  copy="$DIR/$name-$version"
  marker=$(declare -f "patch_${name//-/_}" | sha256sum | cut -c1-16)
  if [[ "$(cat "$copy/.patched" 2>/dev/null)" != "$marker" ]]; then
    rm -rf "$copy"
    mkdir -p "$DIR"
    cp -r "$src" "$copy"
    (cd "$copy" && "patch_${name//-/_}" "$version") >&2
    echo "$marker" > "$copy/.patched"
  fi
  echo "$copy"
}

# cudarc: `dynamic-linking` now enables `dynamic-loading` and selects nothing itself.
patch_cudarc() {
  sed -i 's/^dynamic-linking = \[\]$/dynamic-linking = ["dynamic-loading"]/' Cargo.toml
  grep -q '^dynamic-linking = \["dynamic-loading"\]$' Cargo.toml \
    || { echo "build.sh: cudarc $1's Cargo.toml has no plain dynamic-linking feature" >&2; exit 1; }
  grep -rl 'feature = "dynamic-linking"' . --include=*.rs \
    | xargs sed -i 's/feature = "dynamic-linking"/feature = "lamarck-never"/g'
}

# candle-kernels: only the PTX kernels candle's dense ops load at run time are compiled. Its
# build.rs also compiles the quantized MoE/GGUF kernels (src/moe, mmvq_gguf.cu, mmq_gguf/:
# 75 of the one measured full build's 95 wall minutes) into a static libmoe.a linked with cudart; lamarck
# runs dense models and never calls them. Their launchers in src/ffi.rs become Rust stubs
# that say so and abort, so nothing is linked against cudart or libstdc++ either.
patch_candle_kernels() {
  perl -0pi -e 's/\n    let mut moe_sources = vec!\[.*?\n    Ok\(\(\)\)/\n    Ok(())/s or die' build.rs \
    || { echo "build.sh: candle-kernels $1's build.rs has no MoE library step to remove" >&2; exit 1; }
  sed -i 's/^const CUTILE_FEATURE/#[allow(dead_code)]\nconst CUTILE_FEATURE/' build.rs
  perl -0pi -e '
    s/#\[allow\(dead_code\)\]\n#\[allow\(improper_ctypes\)\]\nextern "C" \{\n(.*)\n\}\s*\z/$1\n/s or die;
    s/\bpub fn (\w+)\(([^;]*?)\)(\s*->\s*\w+)?;/pub unsafe extern "C" fn $1($2)$3 {\n        not_built("$1")\n    }/gs;
    $_ = "#![allow(unused_variables, clippy::too_many_arguments)]\n"
       . "// lamarck (tools/cuda/build.sh): stubs for the MoE/GGUF kernels, which are not built.\n"
       . $_ . "\n#[cold]\nfn not_built(kernel: &str) -> ! {\n"
       . "    eprintln!(\"lamarck: candle\x27s quantized MoE/GGUF CUDA kernel `{kernel}` is not built into \\\n"
       . "        lamarck (tools/cuda/build.sh leaves them out; lamarck evaluates dense models)\");\n"
       . "    std::process::abort()\n}\n";
  ' src/ffi.rs || { echo "build.sh: candle-kernels $1's src/ffi.rs is not one extern block" >&2; exit 1; }
  [[ $(grep -c 'not_built("' src/ffi.rs) -gt 40 ]] && ! grep -q 'extern "C" {' src/ffi.rs \
    || { echo "build.sh: candle-kernels $1's src/ffi.rs: stubs not made" >&2; exit 1; }
}
CUDARC=$(patched_copy cudarc)
KERNELS=$(patched_copy candle-kernels)

cp Cargo.lock "$DIR/Cargo.lock.orig"
restore() { cp "$DIR/Cargo.lock.orig" Cargo.lock; }
trap restore EXIT
cargo build --profile "$PROFILE" --features cuda \
  --config "patch.crates-io.cudarc.path=\"$CUDARC\"" \
  --config "patch.crates-io.candle-kernels.path=\"$KERNELS\"" "$@"
BIN_DIR=target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
echo "built $BIN_DIR/lamarck with CUDA (compute capability $CUDA_COMPUTE_CAP, run-time loaded)"
