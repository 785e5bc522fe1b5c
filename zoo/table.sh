#!/bin/sh
# Reproduce the table in zoo/README.md: every zoo model and three merges of the specialists
# onto or beside the generalist (zoo/merges/*.yaml), scored with `lamarck eval` on one split
# (default test) of every zoo skill.
# Usage (from the repository root): sh zoo/table.sh [path/to/lamarck] [split]
set -eu
LAMARCK=${1:-target/release/lamarck}
SPLIT=${2:-test}
# One thread per evaluation: these models are tiny, and thread start-up costs more than it saves.
export RAYON_NUM_THREADS=1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for m in linear ties task-arithmetic; do
  "$LAMARCK" merge "zoo/merges/$m.yaml" --out "$TMP/$m" >/dev/null 2>&1
done
echo "| model | add | reverse | sort | upper | mean |"
echo "|---|---|---|---|---|---|"
for m in zoo/base zoo/generalist zoo/specialist-add zoo/specialist-reverse zoo/specialist-sort \
         zoo/specialist-upper "$TMP/linear" "$TMP/ties" "$TMP/task-arithmetic"; do
  name=$(basename "$m")
  case "$name" in
    linear) name="linear merge of the specialists";;
    ties) name="TIES merge of the specialists onto the generalist";;
    task-arithmetic) name="task arithmetic of the specialists onto the generalist";;
  esac
  "$LAMARCK" eval "$m" --tasks evals/zoo --split "$SPLIT" 2>/dev/null | awk -v name="$name" '
    $1 ~ /^zoo_/ { v[$1] = 100 * $3; s += 100 * $3; n++ }
    END { printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", name,
          v["zoo_add"], v["zoo_reverse"], v["zoo_sort"], v["zoo_upper"], s / n }'
done
