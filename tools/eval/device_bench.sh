#!/bin/sh
# Benchmark + batch-invariance check on a quiet machine (used on the lent device's CPU).
# usage: tools/eval/device_bench.sh LAMARCK_BINARY OUTDIR
set -e
BIN=$1; OUT=$2
python3 tools/eval/bench_eval.py --lamarck "$BIN" --threads 2 --workdir /tmp/b > "$OUT/bench_t2.json"
python3 tools/eval/bench_eval.py --lamarck "$BIN" --threads 8 --workdir /tmp/b > "$OUT/bench_t8.json"
python3 -c "import json; r=json.load(open('/tmp/b/mc.json')); json.dump(r[:16], open('/tmp/b/r16.json','w'))"
for bs in 1 3 8; do
  RAYON_NUM_THREADS=2 "$BIN" bench-eval --model /tmp/b/qwen2-98m --mode mc --requests /tmp/b/r16.json --batch-size $bs > "$OUT/bs$bs.json"
done
python3 - "$OUT" <<'PY'
import json, sys
o = sys.argv[1]
ll = {bs: json.load(open(f"{o}/bs{bs}.json"))["loglikelihoods"] for bs in (1, 3, 8)}
print("batch 3 == batch 1:", ll[3] == ll[1], " batch 8 == batch 1:", ll[8] == ll[1],
      " max diff:", max(abs(a - b) for bs in (3, 8) for a, b in zip(ll[bs], ll[1])))
PY
cat "$OUT/bench_t2.json" "$OUT/bench_t8.json"
