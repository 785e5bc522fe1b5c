#!/bin/sh
# Reproduce the table in zoo/README.md: every zoo model and two merges of the specialists,
# scored with `lamarck eval` on the test split of every zoo skill.
# Usage (from the repository root): sh zoo/table.sh [path/to/lamarck] [split]
set -eu
LAMARCK=${1:-target/release/lamarck}
SPLIT=${2:-test}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$LAMARCK" merge zoo/merges/linear.yaml --out "$TMP/linear" >/dev/null 2>&1
"$LAMARCK" merge zoo/merges/ties.yaml --out "$TMP/ties" >/dev/null 2>&1
echo "| model | add | reverse | sort | upper | mean |"
echo "|---|---|---|---|---|---|"
for m in zoo/base zoo/generalist zoo/specialist-add zoo/specialist-reverse zoo/specialist-sort \
         zoo/specialist-upper "$TMP/linear" "$TMP/ties"; do
  name=$(basename "$m")
  case "$name" in linear) name="linear merge of the specialists";; ties) name="TIES merge of the specialists";; esac
  "$LAMARCK" eval "$m" --tasks evals/zoo --split "$SPLIT" 2>/dev/null | awk -v name="$name" '
    $1 ~ /^zoo_/ { v[$1] = 100 * $3; s += 100 * $3; n++ }
    END { printf "| %s | %.1f | %.1f | %.1f | %.1f | %.1f |\n", name,
          v["zoo_add"], v["zoo_reverse"], v["zoo_sort"], v["zoo_upper"], s / n }'
done
