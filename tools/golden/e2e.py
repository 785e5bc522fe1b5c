"""Tiny Qwen2 fixtures and end-to-end mergekit 0.1.5 goldens.

Run from the repository root with the mergekit venv:

    /work/pyenv/bin/python tools/golden/e2e.py

1. Writes tiny Qwen2 checkpoints (4 layers, hidden 16, intermediate 32, 4 query / 2 KV
   heads, vocab 64, untied lm_head, a 64-token WordLevel tokenizer) into
   tests/fixtures/merge/<variant>-<f32|bf16>/ with numpy + safetensors: a base and variants
   whose task vectors are dense, sparse (85% exact zeros), low-rank (rank 2 per matrix),
   sign-conflicting (≈ −dense) and layer-limited (only layers 1–2 changed).
2. For every recipe in RECIPES (one per deterministic method, f32 and bf16) and one
   multi-document recipe with slices, gradients and filters, writes
   tests/golden/e2e/<case>/recipe.yaml (model paths relative to the repository root) and
   runs mergekit (HF_HUB_OFFLINE=1, absolute paths in a temporary copy of the recipe),
   keeping its model.safetensors as tests/golden/e2e/<case>/expected.safetensors.
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
FIX = "tests/fixtures/merge"
GOLD = "tests/golden/e2e"
BIN = os.path.dirname(sys.executable)
L, H, I, NH, NKV, V = 4, 16, 32, 4, 2, 64
HD = H // NH

rng = np.random.default_rng(7)


def weight_shapes():
    s = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,), "lm_head.weight": (V, H)}
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


SHAPES = weight_shapes()


def base_weights():
    w = {}
    for name, shape in SHAPES.items():
        if name.endswith("norm.weight"):
            w[name] = 1.0 + rng.normal(0, 0.05, shape)
        else:
            w[name] = rng.normal(0, 0.08, shape)
    return w


def layer_of(name):
    parts = name.split(".")
    return int(parts[2]) if parts[1] == "layers" else None


def variant(base, kind, dense=None):
    out = {}
    for name, b in base.items():
        shape = b.shape
        if kind == "dense":
            d = rng.normal(0, 0.02, shape)
        elif kind == "sparse":
            d = rng.normal(0, 0.04, shape) * (rng.random(shape) < 0.15)
        elif kind == "lowrank":
            if len(shape) == 2:
                d = rng.normal(0, 0.12, (shape[0], 2)) @ rng.normal(0, 0.12, (2, shape[1]))
            else:
                d = rng.normal(0, 0.01, shape)
        elif kind == "conflict":
            d = -0.9 * (dense[name] - b) + rng.normal(0, 0.005, shape)
        elif kind == "layerlimited":
            d = rng.normal(0, 0.03, shape) if layer_of(name) in (1, 2) else np.zeros(shape)
        else:
            raise ValueError(kind)
        out[name] = b + d
    return out


def tokenizer_files(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    words = [f"w{i}" for i in range(V - len(specials))]
    vocab = {t: i for i, t in enumerate(words + specials)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    for s in specials:
        tok.add_special_tokens([s])
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "bos_token": None,
                "model_max_length": 128,
            },
            f,
            indent=2,
        )


def write_model(path, weights, dtype):
    from transformers import Qwen2Config

    os.makedirs(path, exist_ok=True)
    t = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    tensors = {k: torch.tensor(v, dtype=torch.float32).to(t).contiguous() for k, v in weights.items()}
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    cfg = Qwen2Config(
        vocab_size=V,
        hidden_size=H,
        intermediate_size=I,
        num_hidden_layers=L,
        num_attention_heads=NH,
        num_key_value_heads=NKV,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        eos_token_id=V - 1,
        bos_token_id=None,
        torch_dtype={"f32": "float32", "bf16": "bfloat16"}[dtype],
    )
    cfg.architectures = ["Qwen2ForCausalLM"]
    cfg.save_pretrained(path)
    # transformers 5 adds `layer_types`, which mergekit 0.1.5 does not resize when a merge
    # changes the layer count (its config validation then fails); published Qwen2 checkpoints
    # do not carry it. The bf16 fixtures use the older layout of the Qwen2.5 hub configs
    # (`torch_dtype`, top-level `rope_theta`), the f32 ones transformers 5's (`dtype`,
    # `rope_parameters`), so both spellings are exercised.
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    c.pop("layer_types", None)
    if dtype == "bf16":
        c["torch_dtype"] = c.pop("dtype")
        c["rope_theta"] = c.pop("rope_parameters")["rope_theta"]
        c["transformers_version"] = "4.43.1"
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    tokenizer_files(path)


def make_fixtures():
    base = base_weights()
    dense = variant(base, "dense")
    models = {
        "base": base,
        "dense": dense,
        "sparse": variant(base, "sparse"),
        "lowrank": variant(base, "lowrank"),
        "conflict": variant(base, "conflict", dense),
        "layerlimited": variant(base, "layerlimited"),
    }
    if os.path.isdir(FIX):
        shutil.rmtree(FIX)
    for name, w in models.items():
        for dt in ["f32", "bf16"]:
            write_model(f"{FIX}/{name}-{dt}", w, dt)


def m(name, dt):
    return f"{FIX}/{name}-{dt}"


def recipes(dt):
    dtype = {"f32": "float32", "bf16": "bfloat16"}[dt]
    B = m("base", dt)
    three = [("dense", 0.5, 0.6), ("sparse", 0.3, 0.5), ("conflict", 0.4, 0.7)]

    def models(entries, keys=("weight", "density")):
        out = []
        for name, w, d in entries:
            p = {"weight": w}
            if "density" in keys:
                p["density"] = d
            out.append({"model": m(name, dt), "parameters": p})
        return out

    r = {}
    r[f"linear_{dt}"] = {
        "merge_method": "linear",
        "models": [
            {"model": m("dense", dt), "parameters": {"weight": 0.5}},
            {"model": m("lowrank", dt), "parameters": {"weight": 0.3}},
            {"model": m("layerlimited", dt), "parameters": {"weight": 0.2}},
        ],
        "dtype": dtype,
    }
    r[f"slerp_{dt}"] = {
        "merge_method": "slerp",
        "base_model": B,
        "models": [{"model": B}, {"model": m("lowrank", dt)}],
        "parameters": {"t": [{"filter": "self_attn", "value": [0.0, 0.5, 1.0]}, {"filter": "mlp", "value": [1.0, 0.3]}, {"value": 0.4}]},
        "dtype": dtype,
    }
    r[f"nuslerp_{dt}"] = {
        "merge_method": "nuslerp",
        "base_model": B,
        "models": [
            {"model": m("dense", dt), "parameters": {"weight": 0.6}},
            {"model": m("sparse", dt), "parameters": {"weight": 0.4}},
        ],
        "parameters": {"nuslerp_flatten": False},
        "dtype": dtype,
    }
    r[f"task_arithmetic_{dt}"] = {
        "merge_method": "task_arithmetic",
        "base_model": B,
        "models": models(three, ("weight",)),
        "parameters": {"lambda": 0.9},
        "dtype": dtype,
    }
    r[f"ties_{dt}"] = {
        "merge_method": "ties",
        "base_model": B,
        "models": models(three),
        "dtype": dtype,
    }
    r[f"breadcrumbs_{dt}"] = {
        "merge_method": "breadcrumbs",
        "base_model": B,
        "models": models(three),
        "parameters": {"gamma": 0.05},
        "dtype": dtype,
    }
    r[f"breadcrumbs_ties_{dt}"] = {
        "merge_method": "breadcrumbs_ties",
        "base_model": B,
        "models": models(three),
        "parameters": {"gamma": 0.02, "normalize": True},
        "dtype": dtype,
    }
    r[f"model_stock_{dt}"] = {
        "merge_method": "model_stock",
        "base_model": B,
        "models": [{"model": m(x, dt)} for x in ("dense", "lowrank", "layerlimited")],
        "dtype": dtype,
    }
    r[f"passthrough_{dt}"] = {
        "merge_method": "passthrough",
        "slices": [
            # The output keeps 4 layers: mergekit 0.1.5 under transformers 5 cannot write a
            # Qwen2 config whose layer count changed (`layer_types` is not resized).
            {"sources": [{"model": m("dense", dt), "layer_range": [0, 2]}]},
            {"sources": [{"model": m("sparse", dt), "layer_range": [1, 3], "parameters": {"scale": [{"filter": "o_proj", "value": 0.5}, {"value": 1.0}]}}]},
        ],
        "dtype": dtype,
    }
    return r


def multi_recipe(dt):
    """Two stages: ties → slerp over slices with gradients; the final stage unnamed."""
    dtype = {"f32": "float32", "bf16": "bfloat16"}[dt]
    stage1 = {
        "name": "mix-ties",
        "merge_method": "ties",
        "base_model": m("base", dt),
        "models": [
            {"model": m("dense", dt), "parameters": {"weight": 0.7, "density": 0.6}},
            {"model": m("conflict", dt), "parameters": {"weight": 0.5, "density": 0.4}},
        ],
        "dtype": dtype,
    }
    final = {
        "merge_method": "slerp",
        "base_model": m("base", dt),
        "parameters": {"t": [{"filter": "mlp", "value": [0.1, 0.9]}, {"value": [0.0, 0.6, 0.8]}]},
        "slices": [
            {"sources": [{"model": m("base", dt), "layer_range": [0, 2]}, {"model": "mix-ties", "layer_range": [0, 2]}]},
            {"sources": [{"model": m("base", dt), "layer_range": [2, 4]}, {"model": "mix-ties", "layer_range": [2, 4]}]},
        ],
        "dtype": dtype,
    }
    return [stage1, final]


def stochastic_recipes():
    """DARE/DELLA recipes: compared statistically (lamarck's RNG is not torch's)."""
    def two(dt, p0, p1):
        return [
            {"model": m("dense", dt), "parameters": p0},
            {"model": m("lowrank", dt), "parameters": p1},
        ]

    return {
        "dare_ties_bf16": {
            "merge_method": "dare_ties",
            "base_model": m("base", "bf16"),
            "models": two("bf16", {"weight": 0.5, "density": 0.4}, {"weight": 0.5, "density": 0.6}),
            "parameters": {"normalize": True},
            "dtype": "bfloat16",
        },
        "dare_linear_f32": {
            "merge_method": "dare_linear",
            "base_model": m("base", "f32"),
            "models": two("f32", {"weight": 0.6, "density": 0.5}, {"weight": 0.4, "density": 0.5}),
            "dtype": "float32",
        },
        "della_bf16": {
            "merge_method": "della",
            "base_model": m("base", "bf16"),
            "models": two("bf16", {"weight": 0.6, "density": 0.5}, {"weight": 0.4, "density": 0.5}),
            "parameters": {"epsilon": 0.1},
            "dtype": "bfloat16",
        },
        "della_linear_f32": {
            "merge_method": "della_linear",
            "base_model": m("base", "f32"),
            "models": two("f32", {"weight": 0.5, "density": 0.4}, {"weight": 0.5, "density": 0.4}),
            "parameters": {"epsilon": 0.15, "lambda": 1.1},
            "dtype": "float32",
        },
    }


def run_stochastic(tmp):
    """mergekit-yaml with --random-seed 1 and 2 for each stochastic recipe."""
    names = []
    for case, recipe in stochastic_recipes().items():
        case_dir = f"{GOLD}/{case}"
        if os.path.isdir(case_dir):
            shutil.rmtree(case_dir)
        os.makedirs(case_dir)
        with open(f"{case_dir}/recipe.yaml", "w") as f:
            f.write(to_yaml([recipe]))
        cfg = os.path.join(tmp, case + ".yaml")
        with open(cfg, "w") as f:
            f.write(to_yaml([absolutize(recipe)]))
        for seed in (1, 2):
            out = os.path.join(tmp, f"{case}-{seed}")
            run([f"{BIN}/mergekit-yaml", cfg, out, "--quiet", "--random-seed", str(seed)])
            tensors = load_file(os.path.join(out, "model.safetensors"))
            save_file(tensors, os.path.join(case_dir, f"expected-seed{seed}.safetensors"), metadata={"mergekit": "0.1.5"})
        names.append(case)
        print("ok", case)
    return names


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


def keep_output(out_dir, case_dir):
    tensors = load_file(os.path.join(out_dir, "model.safetensors"))
    save_file(tensors, os.path.join(case_dir, "expected.safetensors"), metadata={"mergekit": "0.1.5"})
    shutil.copy(os.path.join(out_dir, "config.json"), os.path.join(case_dir, "expected-config.json"))


def main():
    make_fixtures()
    if os.path.isdir(GOLD):
        for entry in os.listdir(GOLD):
            if os.path.isdir(os.path.join(GOLD, entry)):
                shutil.rmtree(os.path.join(GOLD, entry))
    tmp = tempfile.mkdtemp()
    cases = []
    for dt in ["f32", "bf16"]:
        for case, recipe in recipes(dt).items():
            case_dir = f"{GOLD}/{case}"
            os.makedirs(case_dir)
            with open(f"{case_dir}/recipe.yaml", "w") as f:
                f.write(to_yaml([recipe]))
            cfg = os.path.join(tmp, case + ".yaml")
            with open(cfg, "w") as f:
                f.write(to_yaml([absolutize(recipe)]))
            out = os.path.join(tmp, case)
            run([f"{BIN}/mergekit-yaml", cfg, out, "--quiet"])
            keep_output(out, case_dir)
            cases.append(case)
            print("ok", case)
        case = f"multi_stage_{dt}"
        case_dir = f"{GOLD}/{case}"
        os.makedirs(case_dir)
        docs = multi_recipe(dt)
        with open(f"{case_dir}/recipe.yaml", "w") as f:
            f.write(to_yaml(docs))
        cfg = os.path.join(tmp, case + ".yaml")
        with open(cfg, "w") as f:
            f.write(to_yaml([absolutize(d) for d in docs]))
        out = os.path.join(tmp, case)
        inter = os.path.join(tmp, case + "-stages")
        run([f"{BIN}/mergekit-multi", cfg, "--intermediate-dir", inter, "--out-path", out, "--quiet"])
        keep_output(out, case_dir)
        # the intermediate stage too, so a failure can be localised
        t = load_file(os.path.join(inter, "mix-ties", "model.safetensors"))
        save_file(t, os.path.join(case_dir, "expected-stage-mix-ties.safetensors"), metadata={"mergekit": "0.1.5"})
        cases.append(case)
        print("ok", case)
    stochastic = run_stochastic(tmp)
    with open(f"{GOLD}/cases.json", "w") as f:
        json.dump({"mergekit": "0.1.5", "cases": cases, "stochastic": stochastic}, f, indent=1)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    if sys.argv[1:] == ["--only-stochastic"]:
        # Add/refresh the stochastic cases without regenerating fixtures or the rest.
        tmp = tempfile.mkdtemp()
        names = run_stochastic(tmp)
        with open(f"{GOLD}/cases.json") as f:
            index = json.load(f)
        index["stochastic"] = names
        with open(f"{GOLD}/cases.json", "w") as f:
            json.dump(index, f, indent=1)
        shutil.rmtree(tmp)
    else:
        main()
