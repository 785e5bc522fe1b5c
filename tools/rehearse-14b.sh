#!/usr/bin/env bash
# A 14B-shaped rehearsal of `searches/lamarck-v0.3.yaml` on this machine: nine 48-layer
# stand-ins for the recipe's models (`lamarck synth`, narrow hidden size), the search file's
# recipe and 28 genes unedited, a tiny zoo task instead of the tinyBenchmarks objectives,
# the stage cache spilling to disk, peak RSS measured by /usr/bin/time -v.
#
#   tools/rehearse-14b.sh [WORK_DIR]        # default /tmp/lamarck-rehearsal
#
# Environment: LAMARCK (binary, default target/release/lamarck), CANDIDATES (default 20),
# HIDDEN (default 128), INTERMEDIATE (default 256), CACHE_MEM (default 20M: above one
# 14.2 MB stage output, below the five of a candidate, so they live in the disk cache; 8M
# is below one stage, which is then streamed to disk as it is merged), THREADS (default 0).
# Prints the run's summary, the per-candidate merge log and the peak RSS; exits non-zero
# when the run fails or peak RSS exceeds 3 GB.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/lamarck-rehearsal}"
lamarck="${LAMARCK:-$repo/target/release/lamarck}"
candidates="${CANDIDATES:-20}"
hidden="${HIDDEN:-128}"
intermediate="${INTERMEDIATE:-256}"
cache_mem="${CACHE_MEM:-20M}"
threads="${THREADS:-0}"

[ -x "$lamarck" ] || { echo "no $lamarck: run cargo build --release first" >&2; exit 2; }
rm -rf "$work/run"
mkdir -p "$work/models"

# Nine stand-ins: two synthetic families (base + five fine-tune-like variants each) with
# the zoo's tokenizer (vocabulary 128), so the zoo tasks can score them.
for seed in 1 2; do
  "$lamarck" synth --out "$work/models/f$seed" --seed "$seed" --layers 48 \
    --hidden "$hidden" --intermediate "$intermediate" --heads 4 --kv-heads 2 \
    --vocab 128 --dtype bf16 --force >/dev/null 2>&1
  for m in "$work/models/f$seed"/*/; do
    cp "$repo/zoo/base/tokenizer.json" "$repo/zoo/base/tokenizer_config.json" "$m"
  done
done
cat > "$work/models.yaml" <<MAP
arcee-ai/Virtuoso-Small: models/f1/base
Qwen/Qwen2.5-14B: models/f2/base
Qwen/Qwen2.5-14B-Instruct: models/f2/ft-dense
CultriX/SeQwence-14B-EvolMerge: models/f1/ft-dense
sometimesanotion/lamarck-14b-reason-model_stock: models/f1/ft-sparse
CultriX/Qwen2.5-14B-Wernicke: models/f1/ft-lowrank
sthenno-com/miscii-14b-1028: models/f1/ft-conflict
sometimesanotion/lamarck-14b-prose-model_stock: models/f1/ft-layers
underwoods/medius-erebus-magnum-14b: models/f2/ft-sparse
MAP

# The search file with its recipe and genes as they are; only the objectives, the
# evaluation settings and the budget are replaced (the recipe path made absolute).
awk -v recipe="$repo/searches/lamarck-v0.3/recipe.yaml" \
    -v task="$repo/evals/zoo/add.yaml" -v n="$candidates" '
  /^recipe:/ { print "recipe: " recipe; next }
  /^budget:/ { print "budget: {candidates: " n "}"; next }
  /^eval:/ { print "eval: {dtype: f32, device: cpu, batch_size: 8}"; next }
  /^objectives:/ { print "objectives:"; print "  - {task: " task ", split: dev, metric: exact_match, limit: 8}"; skip = 1; next }
  /^genes:/ { skip = 0 }
  skip && /^  - / { next }
  { print }
' "$repo/searches/lamarck-v0.3.yaml" > "$work/rehearsal.yaml"
# the genes block must be byte-identical to the search file's
diff <(sed -n '/^genes:/,$p' "$repo/searches/lamarck-v0.3.yaml") \
     <(sed -n '/^genes:/,$p' "$work/rehearsal.yaml") >/dev/null \
  || { echo "rehearsal.yaml: genes differ from searches/lamarck-v0.3.yaml" >&2; exit 1; }

cd "$work"
"$lamarck" evolve rehearsal.yaml --dry-run --model-map models.yaml --cache-mem "$cache_mem" > dry-run.txt
/usr/bin/time -v -o time.txt "$lamarck" evolve rehearsal.yaml --out run --model-map models.yaml \
  --cache-mem "$cache_mem" --threads "$threads" --quiet 2> evolve.log | tee evolve.out
tail -n 3 evolve.log
grep "stage cache:" evolve.log || true
echo "--- merges.csv (per candidate: stages merged, reused, which, seconds, cache bytes in RAM, on disk)"
cat run/merges.csv
echo "--- stage cache on disk: $(ls run/stage-cache | wc -l) file(s), $(du -sh run/stage-cache | cut -f1)"
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' time.txt)
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' time.txt)
recorded=$(( $(wc -l < run/candidates.csv) - 1 + $( [ -f run/failed.csv ] && echo $(( $(wc -l < run/failed.csv) - 1 )) || echo 0) ))
echo "candidates recorded: $recorded; wall: $wall; peak RSS: $((rss_kb / 1024)) MiB"
[ "$recorded" -ge "$candidates" ] || { echo "fewer than $candidates candidates" >&2; exit 1; }
[ "$rss_kb" -le $((3 * 1000 * 1000 * 1000 / 1024)) ] || { echo "peak RSS above 3 GB" >&2; exit 1; }
