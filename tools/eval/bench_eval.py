"""Log-likelihood scoring throughput: lamarck (candle) vs transformers, same model, same
requests, same CPU, in one run. Not a test: the numbers depend on the machine and its load.

    cargo build --release   # or a dev build: dependencies are built at opt-level 3
    /work/pyenv/bin/python tools/eval/bench_eval.py --lamarck target/release/lamarck [more binaries]

Makes a random ~98M-parameter Qwen2 (hidden 768, 12 layers, 12/2 heads, intermediate 2048,
vocab 32000, tied embeddings) in --workdir, and lm-eval-shaped requests (contexts of 96-160
tokens, continuations of 1-8). transformers is run the way lm-eval's HFLM scores: right
padding, no attention mask, full-sequence logits, log_softmax, gather. Throughput counts
model input tokens per second (padding excluded) over the whole request set.
"""
import argparse
import json
import os
import subprocess
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def make_model(path):
    if os.path.exists(os.path.join(path, "config.json")):
        return
    cfg = Qwen2Config(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                      num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=2,
                      max_position_embeddings=2048, rope_theta=1000000.0, rms_norm_eps=1e-6,
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).float()
    model.save_pretrained(path, safe_serialization=True)


def make_requests(n, seed):
    g = torch.Generator().manual_seed(seed)
    reqs = []
    for _ in range(n):
        c = int(torch.randint(96, 161, (1,), generator=g))
        k = int(torch.randint(1, 9, (1,), generator=g))
        ids = torch.randint(0, 32000, (c + k,), generator=g).tolist()
        reqs.append({"context": ids[:c], "continuation": ids[c:]})
    return reqs


def transformers_scores(model, reqs, batch_size):
    order = sorted(range(len(reqs)), key=lambda i: -(len(reqs[i]["context"]) + len(reqs[i]["continuation"])))
    out = [None] * len(reqs)
    tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            inps = [(reqs[i]["context"] + reqs[i]["continuation"])[:-1] for i in idx]
            width = max(len(x) for x in inps)
            batch = torch.zeros((len(inps), width), dtype=torch.long)
            for r, x in enumerate(inps):
                batch[r, :len(x)] = torch.tensor(x)
                tokens += len(x)
            logp = torch.log_softmax(model(batch).logits.float(), dim=-1)
            for r, i in enumerate(idx):
                cont = reqs[i]["continuation"]
                n = len(inps[r])
                lp = logp[r, n - len(cont):n].gather(1, torch.tensor(cont)[:, None])
                out[i] = float(lp.sum())
    return tokens, time.perf_counter() - start, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lamarck", nargs="+", default=["target/release/lamarck"],
                    help="one or more lamarck binaries (e.g. builds with and without gemm's x86-v4)")
    ap.add_argument("--workdir", default="/tmp/lamarck-bench")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model_dir = os.path.join(args.workdir, "qwen2-98m")
    os.makedirs(args.workdir, exist_ok=True)
    make_model(model_dir)
    reqs = make_requests(args.requests, 1)
    req_file = os.path.join(args.workdir, "requests.json")
    json.dump(reqs, open(req_file, "w"))

    torch.set_num_threads(args.threads)
    model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    transformers_scores(model, reqs[: args.batch_size], args.batch_size)  # warm-up
    t_tokens, t_secs, t_ll = transformers_scores(model, reqs, args.batch_size)
    del model

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    t_tps = t_tokens / t_secs
    report = {"requests": len(reqs), "batch_size": args.batch_size, "threads": args.threads,
              "tokens": t_tokens, "transformers_tokens_per_s": round(t_tps, 1),
              "torch": torch.__version__, "lamarck": {}}
    for binary in args.lamarck:
        res = subprocess.run([binary, "bench-eval", "--model", model_dir, "--requests", req_file,
                              "--batch-size", str(args.batch_size)], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(res.stderr)
        lam = json.loads(res.stdout.strip().splitlines()[-1])
        report["lamarck"][binary] = {
            "tokens_per_s": round(lam["tokens_per_second"], 1),
            "ratio_over_transformers": round(lam["tokens_per_second"] / t_tps, 3),
            "max_abs_loglikelihood_diff": max(abs(a - b) for a, b in zip(lam["loglikelihoods"], t_ll)),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
