#!/usr/bin/env bash
# Installs a pinned CUDA compiler (nvcc, headers) from PyPI into a private venv, for building
# lamarck's `cuda` feature on a machine that has no CUDA toolkit (a GPU is not needed to build).
#
#   tools/cuda/install.sh            # -> target/cuda-toolkit/ (or $LAMARCK_CUDA_DIR)
#   . target/cuda-toolkit/env.sh     # puts nvcc on PATH, sets CUDA_HOME / CUDA_COMPUTE_CAP
#
# Idempotent: a complete install (marker file) is left as it is. Needs python3 with venv and
# access to PyPI. The versions are pinned: CUDA 13.4 is the newest release cudarc 0.19 knows.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${LAMARCK_CUDA_DIR:-$PWD/target/cuda-toolkit}"
PKGS=(
  nvidia-cuda-nvcc==13.4.92     # nvcc, ptxas, fatbinary, nvlink
  nvidia-nvvm==13.4.92          # cicc + libnvvm (nvcc's device front end)
  nvidia-cuda-crt==13.4.92      # crt/ headers nvcc includes
  nvidia-cuda-runtime==13.4.92  # cuda_runtime.h, cuda_fp16.h, cuda_bf16.h, libcudart
  nvidia-cuda-cccl==13.3.5.0.6  # libcu++ (<nv/target>, <cuda/std/...>) used by cuda_fp16.h
)
if [[ -f "$DIR/.complete" ]] && cmp -s "$DIR/.complete" <(printf '%s\n' "${PKGS[@]}"); then
  echo "CUDA toolkit already installed in $DIR"
  exit 0
fi
rm -rf "$DIR.partial"
python3 -m venv "$DIR.partial/venv"
"$DIR.partial/venv/bin/pip" install --quiet --disable-pip-version-check "${PKGS[@]%%#*}"
ROOT="$DIR/venv/lib/python3.$(python3 -c 'import sys; print(sys.version_info.minor)')/site-packages/nvidia/cu13"
[[ -x "$DIR.partial/${ROOT#"$DIR/"}/bin/nvcc" ]] || { echo "install.sh: no nvcc in $ROOT after pip install" >&2; exit 1; }
cat > "$DIR.partial/env.sh" <<ENV
# Source this file: nvcc and the CUDA headers for \`cargo build --features cuda\`.
export CUDA_HOME="$ROOT"
export CUDA_PATH="$ROOT"
export PATH="$ROOT/bin:\$PATH"
# PTX/SASS target when no GPU can be queried (8.0 = Ampere; newer GPUs JIT the PTX).
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-80}"
ENV
printf '%s\n' "${PKGS[@]}" > "$DIR.partial/.complete"
rm -rf "$DIR"
mv "$DIR.partial" "$DIR"
"$ROOT/bin/nvcc" --version | tail -2
echo "installed: . $DIR/env.sh"
