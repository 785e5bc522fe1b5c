#!/usr/bin/env bash
# Merge benchmark: lamarck vs mergekit 0.1.5 vs the I/O floor on 0.5B-shaped bf16 models.
#
#   tools/bench/bench_merge.sh [bench_merge.py options: --cache warm, --only ties,della, ...]
#
# Builds lamarck (release), provides mergekit 0.1.5, then runs tools/bench/bench_merge.py
# (see its docstring for what is measured and how). Environment:
#   MERGEKIT_VENV  an existing venv with mergekit 0.1.5 (e.g. /work/pyenv); otherwise a
#                  throwaway venv is created in $BENCH_WORK/venv (pip install mergekit==0.1.5
#                  from PyPI, several GB with torch) and reused by later runs.
#   BENCH_WORK     work folder (default target/bench-merge): ~20 GB for both families.
#   NO_MERGEKIT=1  lamarck and the floor only.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${BENCH_WORK:-target/bench-merge}"
mkdir -p "$WORK"

cargo build --release --bin lamarck
LAMARCK=target/release/lamarck

MK_ARGS=()
if [[ "${NO_MERGEKIT:-0}" != 1 ]]; then
  if [[ -n "${MERGEKIT_VENV:-}" ]]; then
    VENV="$MERGEKIT_VENV"
  else
    VENV="$WORK/venv"
    if [[ ! -x "$VENV/bin/mergekit-yaml" ]]; then
      python3 -m venv "$VENV"
      "$VENV/bin/pip" install --quiet --upgrade pip
      "$VENV/bin/pip" install --quiet "mergekit==0.1.5"
    fi
  fi
  "$VENV/bin/python" -c "import importlib.metadata as m; v = m.version('mergekit'); assert v == '0.1.5', v" \
    || { echo "mergekit in $VENV is not 0.1.5" >&2; exit 1; }
  MK_ARGS=(--mergekit-bin "$VENV/bin")
fi

exec python3 tools/bench/bench_merge.py --lamarck "$LAMARCK" --work "$WORK" "${MK_ARGS[@]}" "$@"
