#!/usr/bin/env bash
# The GPU check: one command for a short window on a GPU machine (planned to finish well
# inside 8 minutes on one H200 with a prepared binary). Run from anywhere:
#
#   tools/device/gpu_check.sh [LAMARCK_BIN] [SUMMARY.json]
#
# LAMARCK_BIN (or $LAMARCK_BIN) is a `cuda`-feature build (tools/cuda/build.sh), plain or
# as FILE.gz / FILE.xz; without one the script builds it first (tens of minutes: bring a
# binary). The summary goes to
# SUMMARY.json, else $OUT/gpu_check.json, else ./gpu_check.json. Steps:
#   1. fixtures: tests/fixtures/eval/golden.json on the GPU against the same model on the
#      CPU and transformers' numbers (`bench-eval --mode golden`; f32: every token's
#      log-probability within 1e-4 and greedy generations identical; bf16: every request's
#      sum within 0.1 per token), plus `lamarck eval` of the fixture task on the GPU;
#   2. a 0.5B-shaped family from `lamarck synth`, TIES-merged on the CPU, the merge scored
#      on the GPU (prefix-shared multiple choice, random requests);
#   3. a Qwen2.5-14B-shaped random bf16 model (hidden 5120, 48 layers, 40/8 heads,
#      intermediate 13824, vocab 152064, untied: 14.8B parameters, 29.5 GB) written by
#      `lamarck synth` to local disk, then prefill and greedy-generation throughput with
#      tokens/s and % of the bf16 peak (GPU_CHECK_PEAK_TFLOPS, default 989 = H200 dense).
#      When synth's speed, measured in step 2, says the full model would take longer than
#      GPU_CHECK_SYNTH_BUDGET_S (default 150 s), fewer layers are written and the summary
#      says so (`layers`, `scaled_to_48_layers_tokens_per_second`).
# Every step is timed; a failed step is recorded and the next one still runs. The exit
# status is 0 only when every step passed.
#
# GPU_CHECK_REHEARSE=1 runs the same steps on the CPU with tiny shapes (a minute or two):
# rehearse there so that GPU minutes go to measuring. GPU_CHECK_WORK (default
# /tmp/gpu_check) is the scratch folder (needs ~32 GB free for step 3); GPU_CHECK_LAYERS
# forces the 14B shape's layer count.
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s.%N)
REHEARSE=${GPU_CHECK_REHEARSE:-0}
BIN=${1:-${LAMARCK_BIN:-}}
SUMMARY=${2:-${OUT:-.}/gpu_check.json}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
PEAK=${GPU_CHECK_PEAK_TFLOPS:-989}
BUDGET=${GPU_CHECK_SYNTH_BUDGET_S:-150}
if [[ "$REHEARSE" == 1 ]]; then DEVICE=cpu; else DEVICE=${GPU_CHECK_DEVICE:-cuda}; fi
rm -rf "$WORK"
mkdir -p "$WORK" "$(dirname "$SUMMARY")"
STEPS="$WORK/steps.jsonl"
: >"$STEPS"
FAILED=0

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# A JSON string of $1 (backslashes, quotes, control characters escaped).
jstr() {
  printf '%s' "$1" | awk 'BEGIN { ORS = "" } {
      gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "")
      if (NR > 1) print "\\n"; print }' | { printf '"'; cat; printf '"'; }
}
# The last line of FILE if it is a JSON object, else null.
last_json() {
  local line
  line=$(grep '^{' "$1" 2>/dev/null | tail -1)
  if [[ -n "$line" ]]; then printf '%s' "$line"; else printf 'null'; fi
}
# step NAME CMD...: run, time, record {name, ok, seconds, result, error}.
step() {
  local name=$1 start end rc
  shift
  echo "== $name: $*" >&2
  start=$(now)
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  rc=$?
  end=$(now)
  local ok=true err=null
  if [[ $rc -ne 0 ]]; then
    ok=false
    FAILED=$((FAILED + 1))
    err=$(jstr "exit $rc: $(tail -c 1500 "$WORK/$name.err")")
    echo "   FAILED (exit $rc): $(tail -3 "$WORK/$name.err")" >&2
  fi
  printf '{"name":"%s","ok":%s,"seconds":%s,"result":%s,"error":%s}\n' \
    "$name" "$ok" "$(secs "$start" "$end")" "$(last_json "$WORK/$name.out")" "$err" >>"$STEPS"
  echo "   $(secs "$start" "$end") s" >&2
  return $rc
}
# A number from the last JSON line of a step's output (empty when absent).
field() { grep '^{' "$WORK/$1.out" 2>/dev/null | tail -1 | grep -o "\"$2\":[0-9.e+-]*" | head -1 | cut -d: -f2; }

# 0. The binary: a path, or a gzip/xz-compressed one (what fits the 64 MiB a device run
# carries: tools/device/README.md), or built here.
if [[ -z "$BIN" ]]; then
  step build tools/cuda/build.sh
  BIN=target/release/lamarck
fi
case "$BIN" in
  *.gz) gzip -dc "$BIN" >"$WORK/lamarck" && chmod +x "$WORK/lamarck" && BIN="$WORK/lamarck" ;;
  *.xz) xz -dc "$BIN" >"$WORK/lamarck" && chmod +x "$WORK/lamarck" && BIN="$WORK/lamarck" ;;
esac
step binary "$BIN" --version

# 1. The log-likelihood fixtures on the device against the CPU and transformers.
for model in tiny-tied tiny-sharded; do
  for dtype in f32 bf16; do
    step "fixture_${model}_$dtype" "$BIN" bench-eval --mode golden \
      --requests tests/fixtures/eval/golden.json --model "tests/fixtures/eval/$model" \
      --device "$DEVICE" --dtype "$dtype"
  done
done
# The whole `lamarck eval` path (tokenizer, task file) on the device; its --out JSON on one line.
task_eval() {
  "$BIN" eval tests/fixtures/eval/tiny-tied --tasks tests/fixtures/eval/tasks/mc.yaml \
    --device "$DEVICE" --out "$WORK/fixture_task.json" >&2 || return
  tr -d '\n' <"$WORK/fixture_task.json"
  echo
}
step fixture_task_eval task_eval

# 2. A 0.5B-shaped merge (CPU) scored on the device.
if [[ "$REHEARSE" == 1 ]]; then
  SMALL=(--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 --vocab 1024 --dtype bf16)
else
  SMALL=(--preset qwen2-0-5b)
fi
cat >"$WORK/merge.yaml" <<EOF
merge_method: ties
base_model: $WORK/s05/base
models:
  - model: $WORK/s05/ft-dense
    parameters: {density: 0.5, weight: 0.6}
  - model: $WORK/s05/ft-sparse
    parameters: {density: 0.5, weight: 0.4}
parameters:
  normalize: true
dtype: bfloat16
EOF
S0=$(now)
step synth_0_5b "$BIN" synth --out "$WORK/s05" "${SMALL[@]}" --only base,ft-dense,ft-sparse
SYNTH_S=$(secs "$S0" "$(now)")
step merge_0_5b "$BIN" merge "$WORK/merge.yaml" --out "$WORK/merged"
step score_0_5b "$BIN" bench-eval --mode mc --model "$WORK/merged" --random 16 \
  --prompt-len 256 --continuation-len 8 --choices 4 --device "$DEVICE" --dtype bf16 --summary
SMALL_BYTES=$(du -sb "$WORK/s05" | cut -f1)
rm -rf "$WORK/s05" "$WORK/merged"

# 3. Throughput on a Qwen2.5-14B-shaped bf16 model.
if [[ "$REHEARSE" == 1 ]]; then
  H=128 HEADS=4 KV=2 I=256 V=4096 FULL_LAYERS=48
else
  H=5120 HEADS=40 KV=8 I=13824 V=152064 FULL_LAYERS=48
fi
HD=$((H / HEADS))
PER_LAYER=$((2 * H * H + 2 * H * KV * HD + 3 * H * I + H + 2 * KV * HD + 2 * H))
FIXED=$((2 * V * H + H))
# synth's rate in bytes per second from step 2 (bf16: 2 bytes per parameter).
LAYERS=${GPU_CHECK_LAYERS:-}
if [[ -z "$LAYERS" ]]; then
  LAYERS=$(awk -v bytes="$SMALL_BYTES" -v s="$SYNTH_S" -v budget="$BUDGET" \
    -v fixed="$FIXED" -v per="$PER_LAYER" -v full="$FULL_LAYERS" 'BEGIN {
      rate = bytes / (s > 0.01 ? s : 0.01) / 2;          # parameters per second
      n = int((budget * rate - fixed) / per);
      if (n > full) n = full; if (n < 1) n = 1; print n }')
fi
PARAMS=$((FIXED + LAYERS * PER_LAYER))
echo "== 14B shape: $LAYERS of $FULL_LAYERS layers, $PARAMS parameters" \
  "(synth measured at $SMALL_BYTES bytes in $SYNTH_S s)" >&2
step synth_14b "$BIN" synth --out "$WORK/s14" --hidden $H --layers "$LAYERS" --heads $HEADS \
  --kv-heads $KV --intermediate $I --vocab $V --untied --dtype bf16 --only base
THROUGHPUT=(--model "$WORK/s14/base" --device "$DEVICE" --dtype bf16 --peak-tflops "$PEAK"
  --summary)
if [[ "$REHEARSE" == 1 ]]; then PREFILL_LEN=128 GEN_LEN=32 NEW=8; else PREFILL_LEN=1024 GEN_LEN=128 NEW=64; fi
step prefill_14b "$BIN" bench-eval --mode prefill "${THROUGHPUT[@]}" --random 8 --batch-size 8 \
  --prompt-len $PREFILL_LEN
step generate_14b "$BIN" bench-eval --mode generate "${THROUGHPUT[@]}" --random 8 --batch-size 8 \
  --prompt-len $GEN_LEN --max-new $NEW
step generate_14b_batch1 "$BIN" bench-eval --mode generate "${THROUGHPUT[@]}" --random 2 \
  --batch-size 1 --prompt-len $GEN_LEN --max-new $NEW
rm -rf "$WORK/s14"

# Tokens/s of the full 48 layers, estimated from fewer: the layers' share of the FLOPs.
scaled() {
  local tps
  tps=$(field "$1" tokens_per_second)
  [[ -z "$tps" ]] && { printf 'null'; return; }
  awk -v t="$tps" -v l="$LAYERS" -v full="$FULL_LAYERS" -v per="$PER_LAYER" -v fixed="$FIXED" \
    'BEGIN { printf "%.3f", t * (fixed + l * per) / (fixed + full * per) }'
}
END_T=$(now)
{
  printf '{"device":"%s","rehearsal":%s,"binary":%s,' "$DEVICE" \
    "$([[ "$REHEARSE" == 1 ]] && echo true || echo false)" "$(jstr "$BIN")"
  printf '"gpu":%s,' "$(jstr "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)")"
  printf '"throughput_model":{"hidden":%s,"layers":%s,"full_layers":%s,"heads":%s,"kv_heads":%s,' \
    $H "$LAYERS" $FULL_LAYERS $HEADS $KV
  printf '"intermediate":%s,"vocab":%s,"parameters":%s,"dtype":"bf16","peak_tflop_per_second":%s,' \
    $I $V $PARAMS "$PEAK"
  printf '"scaled_to_48_layers_tokens_per_second":{"prefill":%s,"generate":%s}},' \
    "$(scaled prefill_14b)" "$(scaled generate_14b)"
  printf '"steps_failed":%s,"total_seconds":%s,"steps":[' "$FAILED" "$(secs "$T0" "$END_T")"
  paste -sd, "$STEPS"
  printf ']}\n'
} >"$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
echo "== wrote $SUMMARY ($FAILED failed step(s), $(secs "$T0" "$END_T") s)" >&2
[[ $FAILED -eq 0 ]]
