"""Regression fixtures + mergekit 0.1.5 goldens for the differential-test findings.

Run from the repository root:

    HF_HUB_OFFLINE=1 /work/pyenv/bin/python tools/difftest/regress.py

Writes tests/golden/regress/fixtures/<model>/ (tiny Qwen2 checkpoints: hidden 8, 2 layers,
16 embedding rows, WordLevel tokenizers) and, per case, tests/golden/regress/<case>/
{recipe.yaml, expected.safetensors, expected-config.json}; recipe paths are relative to the
repository root. tests/merge_regress.rs replays every case with `lamarck merge`.
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

ROOT = os.getcwd()
GOLD = "tests/golden/regress"
FIX = f"{GOLD}/fixtures"


class Sh:
    H, NH, NKV, HD, I, L = 8, 2, 1, 4, 16, 2

    weights = gen.Shape.weights


def model(name, base_w, rng, V, ntok, shift, dt, tied, delta):
    sh = Sh()
    w = {}
    for n, b in base_w.items():
        if n in ("model.embed_tokens.weight", "lm_head.weight"):
            b = b[:V]
        w[n] = b + (rng.normal(0, delta, b.shape) if delta else 0)
    if tied:
        w.pop("lm_head.weight", None)
    path = f"{FIX}/{name}"
    os.makedirs(path)
    t = {k: torch.tensor(v, dtype=torch.float32).to(gen.TORCH_DT[dt]).contiguous() for k, v in w.items()}
    save_file(t, f"{path}/model.safetensors", metadata={"format": "pt"})
    gen.write_config(path, sh, Sh.L, V, tied, dt, "v5")
    gen.tokenizer_files(path, ntok, shift)


def fixtures():
    shutil.rmtree(FIX, ignore_errors=True)
    rng = np.random.default_rng(11)
    sh = Sh()
    base_w = {}
    for n, s in sh.weights(Sh.L, 16).items():
        base_w[n] = 1.0 + rng.normal(0, 0.05, s) if n.endswith("norm.weight") else rng.normal(0, 0.08, s)
    base_w["lm_head.weight"] = rng.normal(0, 0.08, (16, Sh.H))
    # name: (rows, tokenizer tokens, word shift, dtype, tied, delta)
    specs = {
        "base": (16, 13, 0, "f32", False, 0),  # Qwen-style padding: 16 rows, 13 tokens
        "ft-a": (16, 13, 0, "f32", False, 0.03),
        "ft-shifted": (16, 16, 2, "f32", False, 0.03),  # other token order (ids move)
        "ft-small": (12, 12, 0, "f32", False, 0.03),  # smaller vocabulary than the base
        "ft-tied": (16, 13, 0, "f32", True, 0.03),
        "base-bf16": (16, 13, 0, "bf16", False, 0),
        "ft-a-f16": (16, 13, 0, "f16", False, 0.03),
    }
    for i, (name, (V, ntok, shift, dt, tied, delta)) in enumerate(specs.items()):
        model(name, base_w, np.random.default_rng(100 + i), V, ntok, shift, dt, tied, delta)


def m(name):
    return f"{FIX}/{name}"


CASES = {
    # F1: tokenizer_source: base drops the padding rows (16 → 13) and sets vocab_size 13
    "tokenizer_base_linear": {
        "merge_method": "linear",
        "models": [{"model": m("base"), "parameters": {"weight": 0.5}}, {"model": m("ft-a"), "parameters": {"weight": 0.5}}],
        "tokenizer_source": "base",
        "dtype": "float32",
    },
    # F1: tokenizer_source: a model with another token order and a smaller-vocab model
    "tokenizer_model_ties": {
        "merge_method": "ties",
        "base_model": m("base"),
        "models": [
            {"model": m("ft-a"), "parameters": {"weight": 0.6, "density": 0.7}},
            {"model": m("ft-shifted"), "parameters": {"weight": 0.5, "density": 0.5}},
            {"model": m("ft-small"), "parameters": {"weight": 0.3, "density": 0.8}},
        ],
        "tokenizer_source": m("ft-shifted"),
        "dtype": "float32",
    },
    "tokenizer_model_slerp": {
        "merge_method": "slerp",
        "base_model": m("base"),
        "models": [{"model": m("base")}, {"model": m("ft-shifted")}],
        "parameters": {"t": 0.3},
        "tokenizer_source": m("ft-shifted"),
    },
    # F2: mixed input dtypes without `dtype:` are promoted (bf16 + f16 → f32)
    "mixed_dtype_linear": {
        "merge_method": "linear",
        "models": [{"model": m("base-bf16"), "parameters": {"weight": 0.5}}, {"model": m("ft-a-f16"), "parameters": {"weight": 0.5}}],
    },
    "mixed_dtype_ties": {
        "merge_method": "ties",
        "base_model": m("base-bf16"),
        "models": [{"model": m("ft-a-f16"), "parameters": {"weight": 0.7, "density": 0.6}}, {"model": m("ft-a"), "parameters": {"weight": 0.4, "density": 0.5}}],
    },
    # F3: last slice from a tied model: no lm_head.weight in the output
    "tied_last_slice": {
        "merge_method": "passthrough",
        "slices": [
            {"sources": [{"model": m("base"), "layer_range": [0, 1]}]},
            {"sources": [{"model": m("ft-tied"), "layer_range": [1, 2]}]},
        ],
        "dtype": "float32",
    },
}


def absolutize(obj):
    if isinstance(obj, dict):
        return {k: absolutize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [absolutize(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(FIX + "/"):
        return os.path.join(ROOT, obj)
    return obj


def main():
    import logging

    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    logging.disable(logging.WARNING)
    fixtures()
    tmp = tempfile.mkdtemp()
    for case, rec in CASES.items():
        d = f"{GOLD}/{case}"
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        with open(f"{d}/recipe.yaml", "w") as f:
            f.write(yaml.safe_dump(rec, sort_keys=False))
        text = yaml.safe_dump(absolutize(rec), sort_keys=False)
        out = os.path.join(tmp, case)
        run_merge(MergeConfiguration.model_validate(yaml.safe_load(text)), out, options=MergeOptions(quiet=True, random_seed=0), config_source=text)
        t = load_file(f"{out}/model.safetensors")
        save_file(t, f"{d}/expected.safetensors", metadata={"mergekit": "0.1.5"})
        shutil.copy(f"{out}/config.json", f"{d}/expected-config.json")
        print("ok", case, {k: (tuple(v.shape), str(v.dtype)) for k, v in t.items() if "embed" in k or "lm_head" in k})
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
