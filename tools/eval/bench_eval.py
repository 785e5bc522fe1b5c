"""Evaluation throughput: lamarck (candle) vs transformers, same model, same requests, same
CPU threads, in one run. Not a test: the numbers depend on the machine and its load.

    cargo build --release
    python -m venv /tmp/venv && /tmp/venv/bin/pip install torch transformers
    /tmp/venv/bin/python tools/eval/bench_eval.py --lamarck target/release/lamarck

Makes a random ~98M-parameter Qwen2 (hidden 768, 12 layers, 12/2 heads, intermediate 2048,
vocab 32000, tied embeddings) in --workdir, then measures two workloads:

- multiple choice: --questions questions x 4 choices, contexts of 250-310 tokens, choices
  of 1-8. transformers runs as lm-eval's HFLM scores: every (context, choice) pair whole,
  --batch-size pairs per pass, longest first, right padding, no attention mask,
  full-sequence logits, log_softmax, gather. lamarck runs `lamarck eval`'s path: each
  context once, its choices against its KV cache.
- generation: --prompts prompts of 32-96 tokens x --new-tokens greedy tokens, --batch-size
  prompts per batch; transformers' batched `generate` (left padding, attention mask, no
  early stop) vs `lamarck eval`'s batched greedy decoding.

Ratios are transformers' seconds over lamarck's for the same work (> 1: lamarck faster).
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


def make_questions(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        c = int(torch.randint(250, 311, (1,), generator=g))
        ctx = torch.randint(0, 32000, (c,), generator=g).tolist()
        conts = [torch.randint(0, 32000, (int(torch.randint(1, 9, (1,), generator=g)),),
                               generator=g).tolist() for _ in range(4)]
        out.append({"context": ctx, "continuations": conts})
    return out


def make_prompts(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 32000, (int(torch.randint(32, 97, (1,), generator=g)),),
                          generator=g).tolist() for _ in range(n)]


def transformers_mc(model, questions, batch_size):
    pairs = [(q["context"], k) for q in questions for k in q["continuations"]]
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    out = [None] * len(pairs)
    start = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            inps = [(pairs[i][0] + pairs[i][1])[:-1] for i in idx]
            width = max(len(x) for x in inps)
            batch = torch.zeros((len(inps), width), dtype=torch.long)
            for r, x in enumerate(inps):
                batch[r, :len(x)] = torch.tensor(x)
            logp = torch.log_softmax(model(batch).logits.float(), dim=-1)
            for r, i in enumerate(idx):
                cont = pairs[i][1]
                n = len(inps[r])
                lp = logp[r, n - len(cont):n].gather(1, torch.tensor(cont)[:, None])
                out[i] = float(lp.sum())
    return time.perf_counter() - start, out


def transformers_generate(model, prompts, batch_size, new_tokens):
    out = []
    start = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(prompts), batch_size):
            chunk = prompts[b:b + batch_size]
            width = max(len(p) for p in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, p in enumerate(chunk):
                ids[r, width - len(p):] = torch.tensor(p)
                mask[r, width - len(p):] = 1
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 pad_token_id=0, eos_token_id=None)
            out.extend(gen[:, width:].tolist())
    return time.perf_counter() - start, out


def run_lamarck(binary, model_dir, mode, req_file, batch_size, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    res = subprocess.run([binary, "bench-eval", "--model", model_dir, "--mode", mode,
                          "--requests", req_file, "--batch-size", str(batch_size)],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lamarck", nargs="+", default=["target/release/lamarck"],
                    help="one or more lamarck binaries")
    ap.add_argument("--workdir", default="/tmp/lamarck-bench")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    model_dir = os.path.join(args.workdir, "qwen2-98m")
    os.makedirs(args.workdir, exist_ok=True)
    make_model(model_dir)
    questions = make_questions(args.questions, 1)
    prompts = make_prompts(args.prompts, 2)
    mc_file = os.path.join(args.workdir, "mc.json")
    gen_file = os.path.join(args.workdir, "generate.json")
    json.dump(questions, open(mc_file, "w"))
    json.dump({"prompts": prompts, "max_new": args.new_tokens}, open(gen_file, "w"))

    torch.set_num_threads(args.threads)
    model = Qwen2ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    transformers_mc(model, questions[:2], args.batch_size)  # warm-up
    t_mc, t_ll = transformers_mc(model, questions, args.batch_size)
    transformers_generate(model, prompts[:args.batch_size], args.batch_size, 2)  # warm-up
    t_gen, t_ids = transformers_generate(model, prompts, args.batch_size, args.new_tokens)
    del model

    report = {"questions": len(questions), "choices": 4 * len(questions),
              "prompts": len(prompts), "new_tokens": args.new_tokens,
              "batch_size": args.batch_size, "threads": args.threads,
              "torch": torch.__version__,
              "transformers_mc_seconds": round(t_mc, 2),
              "transformers_generate_seconds": round(t_gen, 2), "lamarck": {}}
    for binary in args.lamarck:
        mc = run_lamarck(binary, model_dir, "mc", mc_file, args.batch_size, args.threads)
        gen = run_lamarck(binary, model_dir, "generate", gen_file, args.batch_size,
                          args.threads)
        same = sum(a == b for a, b in zip(gen["generated"], t_ids))
        report["lamarck"][binary] = {
            "mc_seconds": round(mc["seconds"], 2),
            "mc_ratio_over_transformers": round(t_mc / mc["seconds"], 2),
            "mc_max_abs_loglikelihood_diff":
                max(abs(a - b) for a, b in zip(mc["loglikelihoods"], t_ll)),
            "generate_seconds": round(gen["seconds"], 2),
            "generate_ratio_over_transformers": round(t_gen / gen["seconds"], 2),
            "generations_equal_to_transformers": f"{same}/{len(prompts)}",
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
