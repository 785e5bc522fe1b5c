"""Tiny Qwen2 fixtures whose tokenizers differ, and mergekit 0.1.5 vocabulary goldens.

Run from the repository root with the mergekit venv:

    /work/pyenv/bin/python tools/golden/vocab.py

1. Writes tiny Qwen2 checkpoints (2 layers, hidden 8, untied lm_head, BPE tokenizers over
   the characters a..i with merges ab/cd/ef/gh and Qwen-style added special tokens) into
   tests/fixtures/vocab/<model>-<f32|bf16>/. The tokenizers differ in which tokens they have
   and in token order; some models have padding rows (config vocab_size > tokens), `wide`
   has tokens with ids >= its vocab_size (mergekit strips them), `outsider` has a token no
   other model has.
2. For every recipe in RECIPES, writes tests/golden/vocab/<case>/recipe.yaml (paths relative
   to the repository root), runs mergekit-yaml, and keeps expected.safetensors,
   expected-config.json and expected-tokenizer.json (mergekit's output tokenizer.json).
3. Writes tests/golden/vocab/relayout.safetensors: mergekit's PermutedVocabulary output
   (the re-laid-out rows each model feeds the merge method) for some model sets, so the
   Rust re-layout is tested on its own; relayout.json describes the entries.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = os.getcwd()
FIX = "tests/fixtures/vocab"
GOLD = "tests/golden/vocab"
BIN = os.path.dirname(sys.executable)
L, H, I, NH, NKV = 2, 8, 16, 2, 1
HD = H // NH
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHARS = list("abcdefgh")
MERGES = {"ab": ("a", "b"), "cd": ("c", "d"), "ef": ("e", "f"), "gh": ("g", "h")}

# model -> (normal tokens in id order, added tokens in id order after them, config vocab_size)
MODELS = {
    # Qwen-style: 13 tokens, 16 rows (3 padding rows)
    "base": (CHARS + ["ab", "cd"], SPECIALS, 16),
    # the same 13 tokens in another order
    "perm": (["h", "g", "ab", "f", "e", "d", "c", "b", "a", "cd"], SPECIALS, 16),
    # lacks `cd`, has `ef`; 13 rows: fewer than the base's 16
    "alt": (["b", "a", "c", "d", "e", "f", "g", "h", "ef", "ab"], SPECIALS, 13),
    # lacks `ab`, has `cd`, `ef`, `gh`
    "alt2": (CHARS + ["cd", "ef", "gh"], SPECIALS, 14),
    # ids 13 and 14 (added tokens) are >= vocab_size 13: mergekit strips them. (A stripped
    # *merged* token, e.g. `gh` at id 13, makes mergekit 0.1.5 fail: it keeps the merge
    # `g h` whose result it removed, and tokenizers refuses the file.)
    "wide": (CHARS + ["ab", "cd"], SPECIALS + ["<|extra|>", "<|extra2|>"], 13),
    # has `i`, which no other model has
    "outsider": (CHARS + ["i", "ab", "gh"], SPECIALS, 14),
}

rng = np.random.default_rng(11)


def shapes(v):
    s = {"model.embed_tokens.weight": (v, H), "model.norm.weight": (H,), "lm_head.weight": (v, H)}
    for i in range(L):
        p = f"model.layers.{i}."
        s |= {
            p + "input_layernorm.weight": (H,),
            p + "post_attention_layernorm.weight": (H,),
            p + "self_attn.q_proj.weight": (NH * HD, H),
            p + "self_attn.q_proj.bias": (NH * HD,),
            p + "self_attn.k_proj.weight": (NKV * HD, H),
            p + "self_attn.k_proj.bias": (NKV * HD,),
            p + "self_attn.v_proj.weight": (NKV * HD, H),
            p + "self_attn.v_proj.bias": (NKV * HD,),
            p + "self_attn.o_proj.weight": (H, NH * HD),
            p + "mlp.gate_proj.weight": (I, H),
            p + "mlp.up_proj.weight": (I, H),
            p + "mlp.down_proj.weight": (H, I),
        }
    return s


def weights(v):
    w = {}
    for name, shape in shapes(v).items():
        if name.endswith("norm.weight"):
            w[name] = 1.0 + rng.normal(0, 0.05, shape)
        else:
            w[name] = rng.normal(0, 0.1, shape)
    return w


def write_tokenizer(path, normal, added):
    """A BPE tokenizer.json: `normal` in the model vocab, `added` as added tokens."""
    # (tokenizers numbers added tokens after the model vocabulary whatever ids the file
    # gives them, so the model vocabulary comes first)
    vocab = {t: i for i, t in enumerate(normal)}
    ids = {t: i for i, t in enumerate(normal + added)}
    merges = [list(MERGES[t]) for t in MERGES if t in vocab]
    added_tokens = [
        {"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for t in added
    ]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": False, "vocab": vocab, "merges": merges,
        },
    }
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        json.dump(tok, f, indent=2, ensure_ascii=False)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "bos_token": None, "model_max_length": 128}, f, indent=2)


def write_model(path, w, v, dtype):
    from transformers import Qwen2Config

    os.makedirs(path, exist_ok=True)
    t = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    tensors = {k: torch.tensor(x, dtype=torch.float32).to(t).contiguous() for k, x in w.items()}
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    cfg = Qwen2Config(vocab_size=v, hidden_size=H, intermediate_size=I, num_hidden_layers=L,
                      num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=64,
                      tie_word_embeddings=False, rope_theta=10000.0, rms_norm_eps=1e-6,
                      eos_token_id=12, bos_token_id=None,
                      torch_dtype={"f32": "float32", "bf16": "bfloat16"}[dtype])
    cfg.architectures = ["Qwen2ForCausalLM"]
    cfg.save_pretrained(path)
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    c.pop("layer_types", None)  # see tools/golden/e2e.py
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")


def make_fixtures():
    if os.path.isdir(FIX):
        shutil.rmtree(FIX)
    for name, (normal, added, v) in MODELS.items():
        w = weights(v)
        for dt in ["f32", "bf16"]:
            path = f"{FIX}/{name}-{dt}"
            write_model(path, w, v, dt)
            write_tokenizer(path, normal, added)


def m(name, dt):
    return f"{FIX}/{name}-{dt}"


def recipes():
    r = {}
    for dt in ["f32", "bf16"]:
        dtype = {"f32": "float32", "bf16": "bfloat16"}[dt]
        # base tokenizer (13 tokens, 16 rows) → 13 rows; `alt` (13 rows, no `cd`) is
        # smaller than the base; `perm` is permuted.
        r[f"base_task_arithmetic_{dt}"] = {
            "merge_method": "task_arithmetic",
            "base_model": m("base", dt),
            "models": [
                {"model": m("perm", dt), "parameters": {"weight": 0.6}},
                {"model": m("alt", dt), "parameters": {"weight": 0.5}},
            ],
            "tokenizer_source": "base",
            "dtype": dtype,
        }
        # a model's tokenizer, no base: `gh` only in alt2 (its row), `ef` in alt + alt2 and
        # `cd` in alt2 + perm (means)
        r[f"model_linear_{dt}"] = {
            "merge_method": "linear",
            "models": [
                {"model": m("alt", dt), "parameters": {"weight": 0.3}},
                {"model": m("alt2", dt), "parameters": {"weight": 0.3}},
                {"model": m("perm", dt), "parameters": {"weight": 0.4}},
            ],
            "tokenizer_source": m("alt2", dt),
            "dtype": dtype,
        }
    # the base's tokenizer has ids >= its vocab_size: stripped (tokenizer.json rewritten)
    r["strip_ties_f32"] = {
        "merge_method": "ties",
        "base_model": m("wide", "f32"),
        "models": [
            {"model": m("base", "f32"), "parameters": {"weight": 0.5, "density": 0.7}},
            {"model": m("alt2", "f32"), "parameters": {"weight": 0.5, "density": 0.6}},
        ],
        "tokenizer_source": "base",
        "dtype": "float32",
    }
    # the tokenizer of a model outside the merge: `i`, `ef`, `gh` are in no merged model
    # (zero rows)
    r["outsider_slerp_f32"] = {
        "merge_method": "slerp",
        "base_model": m("base", "f32"),
        "models": [{"model": m("base", "f32")}, {"model": m("perm", "f32")}],
        "parameters": {"t": 0.3},
        "tokenizer_source": m("outsider", "f32"),
        "dtype": "float32",
    }
    return r


def to_yaml(docs):
    import yaml

    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def absolutize(obj):
    if isinstance(obj, dict):
        return {k: absolutize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [absolutize(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(FIX + "/"):
        return os.path.join(ROOT, obj)
    return obj


def run(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    res = subprocess.run(args, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(args)}")


def relayout_goldens():
    """mergekit's PermutedVocabulary on its own, per (tokenizer source, model set)."""
    from mergekit.common import ModelReference
    from mergekit.tokenizer import PermutedVocabulary
    from mergekit.tokenizer.build import build_tokenizer

    sets = {
        # name: (base or None, models, tokenizer_source, pad_to_multiple_of)
        "base": ("base", ["base", "perm", "alt"], "base", None),
        "alt2": (None, ["alt", "alt2", "perm"], "alt2", None),
        "alt2_pad8": (None, ["alt", "alt2", "perm"], "alt2", 8),
        "strip": ("wide", ["wide", "base", "alt2"], "base", None),
        "outsider": ("base", ["base", "perm"], "outsider", None),
        "alt2_base_alt": ("alt", ["alt", "perm", "alt2"], "alt2", None),
    }
    out, index = {}, {}
    for name, (base, models, source, pad) in sets.items():
        ref = {x: ModelReference.parse(os.path.join(ROOT, m(x, "f32"))) for x in set(models + [source])}
        src = source if source == "base" else ref[source]
        info = build_tokenizer(
            base_model=ref[base] if base else None,
            referenced_models=[ref[x] for x in models],
            tokenizer_source=src,
            trust_remote_code=False,
            add_tokens=[],
        )
        for tensor in ["model.embed_tokens.weight", "lm_head.weight"]:
            tensors = {ref[x]: load_file(os.path.join(m(x, "f32"), "model.safetensors"))[tensor] for x in models}
            task = PermutedVocabulary.model_construct(
                gather_tensors=None, tokenizer_task=None, tokens=None, pad_to_multiple_of=pad,
                base_model=ref[base] if base else None, vocabulary_axis=0)
            res = task.execute(tokenizer_info=info, tensors=tensors)
            for x in models:
                out[f"{name}/{x}/{tensor}"] = res[ref[x]].contiguous()
        index[name] = {"base": base, "models": models, "tokenizer_source": source,
                       "pad_to_multiple_of": pad, "vocab": info.tokenizer.get_vocab()}
    save_file(out, f"{GOLD}/relayout.safetensors", metadata={"mergekit": "0.1.5"})
    with open(f"{GOLD}/relayout.json", "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)


def main():
    make_fixtures()
    if os.path.isdir(GOLD):
        shutil.rmtree(GOLD)
    os.makedirs(GOLD)
    tmp = tempfile.mkdtemp()
    cases = []
    for case, recipe in recipes().items():
        case_dir = f"{GOLD}/{case}"
        os.makedirs(case_dir)
        with open(f"{case_dir}/recipe.yaml", "w") as f:
            f.write(to_yaml([recipe]))
        cfg = os.path.join(tmp, case + ".yaml")
        with open(cfg, "w") as f:
            f.write(to_yaml([absolutize(recipe)]))
        outdir = os.path.join(tmp, case)
        run([f"{BIN}/mergekit-yaml", cfg, outdir, "--quiet"])
        t = load_file(os.path.join(outdir, "model.safetensors"))
        save_file(t, f"{case_dir}/expected.safetensors", metadata={"mergekit": "0.1.5"})
        shutil.copy(os.path.join(outdir, "config.json"), f"{case_dir}/expected-config.json")
        shutil.copy(os.path.join(outdir, "tokenizer.json"), f"{case_dir}/expected-tokenizer.json")
        cases.append(case)
        print("ok", case, {k: list(v.shape) for k, v in t.items() if "embed" in k or "lm_head" in k})
    relayout_goldens()
    with open(f"{GOLD}/cases.json", "w") as f:
        json.dump({"mergekit": "0.1.5", "cases": cases}, f, indent=1)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
