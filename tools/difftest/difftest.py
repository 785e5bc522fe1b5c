"""Differential tester: `lamarck merge` against mergekit 0.1.5 on random tiny Qwen2 families.

    HF_HUB_OFFLINE=1 /work/pyenv/bin/python tools/difftest/difftest.py --cases 50 --seed 1
    HF_HUB_OFFLINE=1 /work/pyenv/bin/python tools/difftest/difftest.py --battery

Each case: a random family (tools/difftest/gen.py), a random recipe (sometimes two stages for
mergekit-multi), mergekit run in this process, `lamarck merge` as a subprocess, then every
tensor, the tensor-name set and config.json fields compared (compare.py), and the lamarck
output loaded with transformers. Results go to WORKDIR/results.jsonl; failing cases keep
their folder (recipe.yaml, models, both outputs) for minimisation.
"""
import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import yaml  # noqa: E402

import compare  # noqa: E402
import gen  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAMARCK = os.environ.get("LAMARCK", os.path.join(ROOT, "target", "debug", "lamarck"))
TD = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
      "f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
RANK = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def to_yaml(docs):
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def run_mergekit(docs, out, inter, seed):
    """mergekit-yaml (one document) or mergekit-multi (several), in-process."""
    from mergekit.config import MergeConfiguration
    from mergekit.graph import Executor
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from mergekit.scripts import multimerge

    opts = MergeOptions(random_seed=seed, quiet=True)
    text = to_yaml(docs)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        if len(docs) == 1 and "name" not in docs[0]:
            cfg = MergeConfiguration.model_validate(yaml.safe_load(text))
            run_merge(cfg, out, options=opts, config_source=text)
        else:
            os.makedirs(inter, exist_ok=True)
            configs, deps = multimerge.load_config(text, inter)
            tasks = multimerge.make_tasks(configs, deps, opts, inter, out, False)
            Executor(tasks, math_device=torch.device("cpu"), storage_device=torch.device("cpu")).execute()


def run_lamarck(recipe_path, out, stages, seed, threads=1, extra=()):
    args = [LAMARCK, "merge", recipe_path, "--out", out, "--stages-dir", stages, "--seed", str(seed),
            "--threads", str(threads), *extra]
    t = time.time()
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr, time.time() - t


def sha_dir(d):
    h = hashlib.sha256()
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with open(os.path.join(d, f), "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def tol_dtype(docs, models, out_dt):
    """Coarsest dtype the final stage's numbers pass through."""
    d = docs[-1]
    dts = []
    if d.get("dtype"):
        dts.append(TD[d["dtype"]])
    else:
        dts += [TD[m.dt] for m in models]
        for prev in docs[:-1]:
            if prev.get("dtype"):
                dts.append(TD[prev["dtype"]])
    for prev in docs[:-1]:
        for k in ("dtype", "out_dtype"):
            if prev.get(k):
                dts.append(TD[prev[k]])
        if not prev.get("dtype"):
            # an earlier stage computed in its inputs' dtype: its rounding carries over
            dts += [TD[m.dt] for m in models]
    dts.append(out_dt)
    return max(dts, key=lambda t: RANK[t])


def load_with_transformers(out):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as tl

    tl.disable_progress_bar()

    m, info = AutoModelForCausalLM.from_pretrained(out, dtype="auto", output_loading_info=True)
    if info.get("missing_keys"):
        return f"transformers initialised missing weights {sorted(info['missing_keys'])[:3]}"
    ids = torch.tensor([[0, 1, 2, 3]])
    with torch.no_grad():
        logits = m(ids).logits
    if not torch.isfinite(logits).all():
        return "non-finite logits"
    return None


def gammas(obj, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "gamma":
                out.extend(x for x in json.dumps(v).replace("[", " ").replace("]", " ").replace(",", " ").split() if x.replace(".", "").isdigit())
            gammas(v, out)
    elif isinstance(obj, list):
        for v in obj:
            gammas(v, out)
    return out


def known_deviation(docs, bad_tensors, A):
    """Deliberate differences documented in the spec/issues (not bugs): breadcrumbs tensors
    with floor(gamma·numel) == 0 for some gamma the recipe can give (mergekit zeroes them)."""
    m = docs[-1]["merge_method"]
    if not m.startswith("breadcrumbs"):
        return None
    gs = [float(g) for g in gammas(docs[-1], [])] + [0.01]
    if all(any(int(g * A[k].numel()) == 0 for g in gs) for k, _ in bad_tensors):
        return "breadcrumbs floor(gamma*n)==0 (mergekit zeroes the task vector; lamarck keeps it)"
    return None


def one_case(i, seed, work, keep_all=False):
    r = random.Random(seed * 100003 + i)
    case = os.path.join(work, f"case{i:04d}")
    shutil.rmtree(case, ignore_errors=True)
    os.makedirs(case)
    sh, models = gen.make_family(r, os.path.join(case, "models"), n_variants=r.choice([3, 4]))
    method = r.choice(gen.METHODS)
    multi = r.random() < 0.15 and method != "passthrough"
    docs = []
    if multi:
        m1 = r.choice(["linear", "ties", "task_arithmetic", "slerp", "model_stock"])
        st = gen.recipe(r, m1, models, sh)
        gen.ensure_weights(st)
        st = {"name": "stage-a", **st}
        st.pop("tokenizer_source", None)
        docs.append(st)
    rec = gen.recipe(r, method, models, sh)
    gen.ensure_weights(rec)
    if multi:
        # one non-base model of the final stage becomes the stage output
        txt = json.dumps(rec)
        cands = [m for m in models[1:] if m.path in txt]
        if cands:
            txt = txt.replace(json.dumps(r.choice(cands).path), json.dumps("stage-a"))
        rec = json.loads(txt)
    docs.append(rec)
    if r.random() < 0.1 and method not in gen.STOCHASTIC:
        docs[-1]["name"] = "final-named"
    mk_seed = r.randrange(1000)
    with open(os.path.join(case, "recipe.yaml"), "w") as f:
        f.write(to_yaml(docs))
    info = {"case": i, "seed": seed, "method": method, "multi": multi, "dir": case,
            "models": [m.desc() for m in models], "shape": vars(sh)}
    mk_out, la_out = os.path.join(case, "out-mergekit"), os.path.join(case, "out-lamarck")
    named_final = "name" in docs[-1]
    mk_err = None
    t = time.time()
    try:
        # named final stage: mergekit-multi writes it to the intermediate dir
        run_mergekit(docs, None if named_final else mk_out, os.path.join(case, "mk-stages"), mk_seed)
        if named_final:
            mk_out = os.path.join(case, "mk-stages", docs[-1]["name"])
    except Exception as e:  # noqa: BLE001
        mk_err = f"{type(e).__name__}: {e}"[:400]
    info["mk_s"] = round(time.time() - t, 2)
    extra = ["--shard-size", r.choice(["2K", "20K"])] if r.random() < 0.2 else []
    info["la_extra"] = extra
    rc, log, secs = run_lamarck(os.path.join(case, "recipe.yaml"), la_out, os.path.join(case, "la-stages"), mk_seed, extra=extra)
    info["la_s"] = round(secs, 2)
    info["la_rc"] = rc
    problems = []
    if "panicked" in log:
        problems.append("lamarck panicked: " + log[-600:])
    if mk_err and rc == 0:
        info["status"] = "mergekit-fails-lamarck-ok"
        info["mk_err"] = mk_err
    elif mk_err and rc != 0:
        info["status"] = "both-fail"
        info["mk_err"] = mk_err
        info["la_err"] = log[-600:]
    elif rc != 0:
        info["status"] = "lamarck-fails"
        info["la_err"] = log[-800:]
    else:
        problems += check_outputs(docs, models, mk_out, la_out, method, info)
        if method in gen.STOCHASTIC:
            problems += check_reproducible(case, la_out, mk_seed, extra)
        info["status"] = "ok" if not problems else "DIFF"
    tags = []
    if any(d.get("tokenizer_source") for d in docs) and len({(m.V, m.ntok, m.V != models[0].V) for m in models}) > 1 or any(m.ntok != m.V for m in models) and any(d.get("tokenizer_source") for d in docs):
        tags.append("tokenizer")
    if len({m.dt for m in models}) > 1 and not all(d.get("dtype") for d in docs):
        tags.append("mixed-dtype")
    if len({m.V for m in models}) > 1:
        tags.append("vocab-mismatch")
    info["tags"] = tags
    if problems and not docs[-1].get("base_model") and all(p.startswith("config ") for p in problems):
        # D3: without a base, mergekit's config donor comes from a Python set (hash order)
        info["known"] = "no-base config donor (mergekit: set order) | " + "; ".join(problems)
        problems = []
        info["status"] = "ok"
    if problems:
        info["problems"] = problems
        if info["status"] == "ok":
            info["status"] = "DIFF"
    if info["status"] == "ok" and not keep_all:
        shutil.rmtree(case, ignore_errors=True)
    return info


def check_outputs(docs, models, mk_out, la_out, method, info):
    problems = []
    A, B = compare.load_dir(la_out), compare.load_dir(mk_out)
    if set(A) != set(B):
        problems.append(f"tensor names: lamarck-only {sorted(set(A) - set(B))[:5]} mergekit-only {sorted(set(B) - set(A))[:5]}")
    shards = sorted(f for f in os.listdir(la_out) if f.endswith(".safetensors"))
    if len(shards) > 1:
        idx = os.path.join(la_out, "model.safetensors.index.json")
        if not os.path.exists(idx):
            problems.append(f"{len(shards)} shards but no index.json")
        else:
            wm = json.load(open(idx))["weight_map"]
            if set(wm) != set(A) or not set(wm.values()) <= set(shards):
                problems.append("index.json weight_map does not match the shards")
            n = len(shards)
            if shards != [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]:
                problems.append(f"shard names {shards[:3]}")
    ca, cb = compare.config(la_out), compare.config(mk_out)
    for k in ("num_hidden_layers", "vocab_size", "tie_word_embeddings"):
        if ca.get(k) != cb.get(k):
            problems.append(f"config {k}: lamarck {ca.get(k)} mergekit {cb.get(k)}")
    if compare.cfg_dtype(ca) != compare.cfg_dtype(cb):
        problems.append(f"config dtype: lamarck {compare.cfg_dtype(ca)} mergekit {compare.cfg_dtype(cb)}")
    common = sorted(set(A) & set(B))
    if not common:
        return problems + ["no common tensors"]
    out_dt = B[common[0]].dtype
    tdt = tol_dtype(docs, models, out_dt)
    info["tol_dtype"] = str(tdt)
    stochastic = method in gen.STOCHASTIC
    bad_tensors = []
    for k in common:
        if A[k].dtype != B[k].dtype:
            problems.append(f"{k}: dtype lamarck {A[k].dtype} mergekit {B[k].dtype}")
            continue
        if stochastic:
            continue
        res = compare.compare_tensors(A[k], B[k], tdt)
        if not res["ok"]:
            bad_tensors.append((k, res))
    if bad_tensors:
        dev = known_deviation(docs, bad_tensors, A)
        if any("tokenizer_source" in d for d in docs) and all("embed" in k or "lm_head" in k for k, _ in bad_tensors):
            info["suspect"] = "tokenizer re-layout"
        head = "; ".join(f"{k}: {r.get('why', '')} bad={r.get('bad')}/{r.get('n')} max_abs={r.get('max_abs', 0):.3g} max_rel={r.get('max_rel', 0):.3g} ulps={r.get('max_ulps', '-')} worst={r.get('worst')}" for k, r in bad_tensors[:4])
        msg = f"{len(bad_tensors)}/{len(common)} tensors differ: {head}"
        if dev:
            info["known"] = dev + " | " + msg
        else:
            problems.append(msg)
    if stochastic:
        base_dir = docs[-1].get("base_model")
        base_t = compare.load_dir(base_dir) if base_dir and os.path.isdir(base_dir) else None
        if base_t is not None:
            names = [k for k in common if k in base_t and "layers" in k]
            sa = compare.delta_stats(A, base_t, names)
            sb = compare.delta_stats(B, base_t, names)
            ok, note = compare.stochastic_ok(sa, sb)
            info["stats"] = note
            if not ok:
                problems.append("stochastic stats: " + note)
    try:
        err = load_with_transformers(la_out)
        if err:
            problems.append("transformers: " + err)
    except Exception as e:  # noqa: BLE001
        problems.append(f"transformers load failed: {type(e).__name__}: {str(e)[:300]}")
    return problems


def check_reproducible(case, la_out, seed, extra):
    """--threads 2 gives the same bytes; another seed gives other bytes."""
    problems = []
    recipe = os.path.join(case, "recipe.yaml")
    o2 = la_out + "-t2"
    rc, log, _ = run_lamarck(recipe, o2, os.path.join(case, "la-stages-t2"), seed, threads=2, extra=extra)
    if rc != 0 or sha_dir(o2) != sha_dir(la_out):
        problems.append("--threads 2 output differs from --threads 1")
    o3 = la_out + "-s2"
    rc, log, _ = run_lamarck(recipe, o3, os.path.join(case, "la-stages-s2"), seed + 1, extra=extra)
    if rc == 0 and sha_dir(o3) == sha_dir(la_out) and "density" in open(recipe).read():
        problems.append("another --seed gives identical output")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default="/tmp/difftest")
    ap.add_argument("--only", type=int, nargs="*", help="run just these case numbers")
    ap.add_argument("--keep", action="store_true", help="keep passing cases too")
    ap.add_argument("--methods", nargs="*", help="only these merge methods")
    ap.add_argument("--battery", action="store_true", help="run the broken-input battery instead")
    a = ap.parse_args()
    logging.disable(logging.WARNING)
    os.makedirs(a.work, exist_ok=True)
    if a.methods:
        gen.METHODS[:] = a.methods
    if a.battery:
        import battery

        sys.exit(battery.main(a.work, LAMARCK))
    res_path = os.path.join(a.work, "results.jsonl")
    idx = a.only if a.only else range(a.start, a.start + a.cases)
    counts = {}
    for i in idx:
        try:
            info = one_case(i, a.seed, a.work, a.keep)
        except Exception as e:  # noqa: BLE001
            info = {"case": i, "status": "harness-error", "err": traceback.format_exc()[-800:]}
        counts[info["status"]] = counts.get(info["status"], 0) + 1
        with open(res_path, "a") as f:
            f.write(json.dumps(info) + "\n")
        line = f"case {i:4d} {info.get('method', '?'):17s} {info['status']} {','.join(info.get('tags', []))}"
        if info.get("problems"):
            line += "  " + info["problems"][0][:200]
        elif info.get("la_err") and info["status"] == "lamarck-fails":
            line += "  " + info["la_err"].strip().splitlines()[-1][:200]
        elif info.get("mk_err"):
            line += "  mk: " + info["mk_err"][:150]
        print(line, flush=True)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
