"""Random tiny Qwen2 families and random mergekit recipes for the differential tester."""
import copy
import json
import os
import random

import numpy as np
import torch
from safetensors.torch import save_file

TORCH_DT = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
CFG_DT = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


class Shape:
    def __init__(self, r: random.Random):
        self.H, self.NH = r.choice([(8, 2), (16, 4), (16, 2), (24, 2)])
        self.NKV = r.choice([n for n in (1, 2) if self.NH % n == 0])
        self.HD = self.H // self.NH
        self.I = r.choice([16, 24, 32])
        self.L = r.choice([2, 3, 4, 5])
        self.V = r.choice([32, 40, 64])

    def weights(self, L, V):
        s = {"model.embed_tokens.weight": (V, self.H), "model.norm.weight": (self.H,)}
        for i in range(L):
            p = f"model.layers.{i}."
            s |= {
                p + "input_layernorm.weight": (self.H,),
                p + "post_attention_layernorm.weight": (self.H,),
                p + "self_attn.q_proj.weight": (self.NH * self.HD, self.H),
                p + "self_attn.q_proj.bias": (self.NH * self.HD,),
                p + "self_attn.k_proj.weight": (self.NKV * self.HD, self.H),
                p + "self_attn.k_proj.bias": (self.NKV * self.HD,),
                p + "self_attn.v_proj.weight": (self.NKV * self.HD, self.H),
                p + "self_attn.v_proj.bias": (self.NKV * self.HD,),
                p + "self_attn.o_proj.weight": (self.H, self.NH * self.HD),
                p + "mlp.gate_proj.weight": (self.I, self.H),
                p + "mlp.up_proj.weight": (self.I, self.H),
                p + "mlp.down_proj.weight": (self.H, self.I),
            }
        return s


class Model:
    """One generated checkpoint: where it is and what it looks like."""

    def __init__(self, path, name, L, V, ntok, tied, dt):
        self.path, self.name, self.L, self.V, self.ntok, self.tied, self.dt = path, name, L, V, ntok, tied, dt

    def desc(self):
        return f"{self.name}: L={self.L} V={self.V} tok={self.ntok} {'tied' if self.tied else 'untied'} {self.dt}"


def tokenizer_files(path, ntok, shift):
    """A WordLevel tokenizer of `ntok` tokens; `shift` renames some words so vocabularies differ."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    nwords = ntok - len(SPECIALS)
    words = [f"w{i + shift}" for i in range(nwords)]
    vocab = {t: i for i, t in enumerate(words + SPECIALS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIALS)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "bos_token": None, "model_max_length": 128}, f, indent=2)


def write_config(path, sh, L, V, tied, dt, style):
    c = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "attention_dropout": 0.0,
        "bos_token_id": None, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": sh.H,
        "initializer_range": 0.02, "intermediate_size": sh.I, "max_position_embeddings": 128,
        "max_window_layers": L, "num_attention_heads": sh.NH, "num_hidden_layers": L,
        "num_key_value_heads": sh.NKV, "rms_norm_eps": 1e-6, "tie_word_embeddings": tied,
        "use_cache": True, "use_sliding_window": False, "vocab_size": V,
    }
    if style == "v4":
        c |= {"torch_dtype": CFG_DT[dt], "rope_theta": 10000.0, "sliding_window": 4096,
              "transformers_version": "4.43.1"}
    else:
        c |= {"dtype": CFG_DT[dt], "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
              "sliding_window": None, "transformers_version": "5.0.0"}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)


def make_family(r: random.Random, root, n_variants=4):
    """Base + variants sharing a shape. Returns (shape, [Model]); models[0] is the base."""
    sh = Shape(r)
    nr = np.random.default_rng(r.getrandbits(32))
    fam_dt = r.choice(["f32", "f32", "bf16", "f16"])
    fam_tied = r.random() < 0.4
    mixed_dt = r.random() < 0.08
    mixed_tied = r.random() < 0.1
    vocab_mismatch = r.random() < float(os.environ.get("DIFFTEST_VOCAB_P", "0.12"))
    style = r.choice(["v4", "v5"])
    tok_pad = r.random() < float(os.environ.get("DIFFTEST_TOKPAD_P", "0.2"))
    base_w = {}
    for n, s in sh.weights(sh.L, sh.V).items():
        base_w[n] = 1.0 + nr.normal(0, 0.05, s) if n.endswith("norm.weight") else nr.normal(0, 0.08, s)
    if not fam_tied:
        base_w["lm_head.weight"] = nr.normal(0, 0.08, (sh.V, sh.H))
    kinds = ["dense", "sparse", "lowrank", "conflict", "layerlimited", "dense"]
    models = []
    dense0 = None
    for vi in range(n_variants + 1):
        name = "base" if vi == 0 else f"{kinds[(vi - 1) % len(kinds)]}{vi}"
        kind = None if vi == 0 else kinds[(vi - 1) % len(kinds)]
        dt = r.choice(["f32", "bf16", "f16"]) if (mixed_dt and vi > 0) else fam_dt
        tied = (not fam_tied) if (mixed_tied and vi == n_variants) else fam_tied
        V = sh.V
        if vocab_mismatch and vi > 0 and r.random() < 0.5:
            V = sh.V + r.choice([-8, 8])
        ntok = V - (3 if tok_pad else 0)
        w = {}
        for n, b in base_w.items():
            w[n] = b
        if V != sh.V:
            extra = nr.normal(0, 0.08, (max(V - sh.V, 0), sh.H))
            for n in ("model.embed_tokens.weight", "lm_head.weight"):
                if n in w:
                    w[n] = np.concatenate([w[n], extra])[:V]
        if not tied and "lm_head.weight" not in w:
            w["lm_head.weight"] = w["model.embed_tokens.weight"] + nr.normal(0, 0.02, (V, sh.H))
        if tied:
            w.pop("lm_head.weight", None)
        out = {}
        for n, b in w.items():
            s = b.shape
            if kind is None:
                d = np.zeros(s)
            elif kind == "dense":
                d = nr.normal(0, 0.02, s)
            elif kind == "sparse":
                d = nr.normal(0, 0.04, s) * (nr.random(s) < 0.15)
            elif kind == "lowrank":
                d = nr.normal(0, 0.12, (s[0], 2)) @ nr.normal(0, 0.12, (2, s[1])) if len(s) == 2 else nr.normal(0, 0.01, s)
            elif kind == "conflict":
                d = -0.9 * (dense0[n][: s[0]] - b) if dense0 is not None and n in dense0 and dense0[n].shape == s else nr.normal(0, 0.02, s)
                d = d + nr.normal(0, 0.005, s)
            else:
                parts = n.split(".")
                layer = int(parts[2]) if parts[1] == "layers" else None
                d = nr.normal(0, 0.03, s) if layer in (1,) else np.zeros(s)
            out[n] = b + d
        if kind == "dense" and dense0 is None:
            dense0 = out
        path = os.path.join(root, name)
        os.makedirs(path, exist_ok=True)
        tensors = {k: torch.tensor(v, dtype=torch.float32).to(TORCH_DT[dt]).contiguous() for k, v in out.items()}
        if r.random() < 0.15:  # sharded input with an index
            names = sorted(tensors)
            half = len(names) // 2
            wm, total = {}, 0
            for si, part in enumerate([names[:half], names[half:]]):
                fn = f"model-{si + 1:05d}-of-00002.safetensors"
                save_file({k: tensors[k] for k in part}, os.path.join(path, fn), metadata={"format": "pt"})
                for k in part:
                    wm[k] = fn
                    total += tensors[k].numel() * tensors[k].element_size()
            with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
        else:
            save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
        write_config(path, sh, sh.L, V, tied, dt, style)
        tokenizer_files(path, ntok, 0 if V == sh.V else 2)
        models.append(Model(path, name, sh.L, V, ntok, tied, dt))
    return sh, models


# ---------------------------------------------------------------- recipes

FILTERS = ["self_attn", "mlp", "q_proj", "layers.1.", "norm", "embed_tokens", "lm_head", "o_proj", "*", "proj.bias"]
GTA = ["task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties", "della", "della_linear"]
STOCHASTIC = {"dare_ties", "dare_linear", "della", "della_linear"}
METHODS = GTA + ["linear", "slerp", "nuslerp", "model_stock", "passthrough"]


def rnd(r, lo, hi):
    return round(r.uniform(lo, hi), 3)


def value(r, lo, hi, cond_p=0.3, grad_p=0.3, need_default=True):
    """A parameter setting: scalar, gradient, or conditionals (with a default unless told)."""
    x = r.random()
    if x < grad_p:
        return [rnd(r, lo, hi) for _ in range(r.choice([2, 3, 4]))]
    if x < grad_p + cond_p:
        conds = []
        for f in r.sample(FILTERS, r.choice([1, 2, 3])):
            v = value(r, lo, hi, 0, 0.4)
            conds.append({"value": v} if f == "*" and r.random() < 0.5 else {"filter": f, "value": v})
        if need_default and not any("filter" not in c or c["filter"] == "*" for c in conds):
            conds.append({"value": rnd(r, lo, hi)})
        return conds
    return rnd(r, lo, hi)


def gta_model_params(r, method, den_lo):
    p = {"weight": value(r, -0.2 if r.random() < 0.1 else 0.1, 1.0)}
    if method != "task_arithmetic" and r.random() < 0.85:
        if method.startswith("della"):
            p["density"] = rnd(r, 0.3, 0.8)
            if r.random() < 0.5:
                p["epsilon"] = rnd(r, 0.0, 0.15)
        else:
            p["density"] = value(r, den_lo, 1.0, 0.2, 0.3)
        if method.startswith("breadcrumbs") and r.random() < 0.5:
            p["gamma"] = r.choice([0.01, 0.02, 0.05, 0.1, 0.2])
    return p


def recipe(r: random.Random, method, models, sh):
    """One random recipe for `method` over `models` (models[0] = base)."""
    base, others = models[0], models[1:]
    rec = {"merge_method": method}
    params = {}
    slice_syntax = r.random() < 0.35
    L = sh.L
    eq_vocab = [m for m in others if m.V == base.V]
    # Which models take part.
    if method == "slerp":
        picks = [r.choice(others)]
    elif method == "nuslerp":
        picks = r.sample(others, 2)
    elif method == "model_stock":
        picks = r.sample(others, r.choice([2, 3]))
    elif method == "passthrough":
        picks = r.sample(models, 2)
    elif method == "linear":
        picks = r.sample(models, r.choice([2, 3]))
    else:
        pool = others if r.random() < 0.7 else eq_vocab or others
        picks = r.sample(pool, min(len(pool), r.choice([1, 2, 3])))
    den_lo = 0.3
    model_params = {}
    for m in picks:
        if method in GTA:
            model_params[m.name] = gta_model_params(r, method, den_lo)
        elif method in ("linear", "nuslerp"):
            model_params[m.name] = {"weight": value(r, 0.1, 1.0)}
        elif method == "passthrough" and r.random() < 0.6:
            model_params[m.name] = {"scale": value(r, 0.5, 1.5)}
    # Global params.
    if method in GTA:
        for k in ("normalize", "rescale", "int8_mask"):
            if r.random() < 0.3:
                params[k] = r.random() < 0.5
        if r.random() < 0.3:
            params["lambda"] = rnd(r, 0.5, 1.5)
        if r.random() < 0.25:  # per-model fallbacks at top level
            if method != "task_arithmetic":
                params["density"] = rnd(r, 0.4, 1.0) if not method.startswith("della") else rnd(r, 0.4, 0.7)
            if method.startswith("della") and r.random() < 0.5:
                params["epsilon"] = rnd(r, 0.0, 0.1)
        if r.random() < 0.3:  # move one model's weight to the top level
            params["weight"] = rnd(r, 0.1, 1.0)
            victim = r.choice(picks)
            model_params[victim.name].pop("weight", None)
    if method == "linear" and r.random() < 0.3:
        params["normalize"] = r.random() < 0.5
    if method == "slerp":
        params["t"] = value(r, 0.0, 1.0, 0.5, 0.3)
    if method == "nuslerp":
        if r.random() < 0.5:
            params["nuslerp_flatten"] = r.random() < 0.5
        if r.random() < 0.4:
            params["nuslerp_row_wise"] = r.random() < 0.5
    if method == "model_stock" and r.random() < 0.4:
        params["filter_wise"] = r.random() < 0.5
    use_base = method in GTA or method in ("slerp", "model_stock") or (method == "nuslerp" and r.random() < 0.5)
    if use_base:
        rec["base_model"] = base.path
    if method == "passthrough" or (slice_syntax and method not in ("model_stock",)):
        rec["slices"] = slices(r, method, picks, base if use_base else None, model_params, sh)
    else:
        ms = []
        order = list(picks)
        if method == "slerp":
            order = [base] + order if r.random() < 0.5 else order + [base]
        elif use_base and r.random() < 0.3:
            order.insert(r.randrange(len(order) + 1), base)
        for m in order:
            e = {"model": m.path}
            if model_params.get(m.name):
                e["parameters"] = model_params[m.name]
            ms.append(e)
        rec["models"] = ms
    if params:
        rec["parameters"] = params
    if r.random() < 0.6:
        rec["dtype"] = r.choice(["float32", "float32", "bfloat16", "float16"])
    if r.random() < 0.25:
        rec["out_dtype"] = r.choice(["float32", "bfloat16", "float16"])
    if r.random() < float(os.environ.get("DIFFTEST_TOKENIZER_P", "0.2")):
        rec["tokenizer_source"] = "base" if (use_base and r.random() < 0.5) else r.choice(picks).path
    return rec


def slices(r, method, picks, base, model_params, sh):
    L = sh.L
    out = []
    if method == "passthrough":
        # total length L: mergekit 0.1.5 under transformers 5 cannot write a Qwen2 config
        # whose layer count changed (`layer_types` is not resized)
        cuts = sorted(r.sample(range(1, L), r.choice([0, 1, 2]) if L > 2 else r.choice([0, 1])))
        bounds = [0] + cuts + [L]
        for i in range(len(bounds) - 1):
            m = r.choice(picks) if r.random() < 0.7 else picks[0]
            n = bounds[i + 1] - bounds[i]
            a = r.randrange(0, L - n + 1)
            b = a + n
            src = {"model": m.path, "layer_range": [a, b]}
            if model_params.get(m.name):
                src["parameters"] = copy.deepcopy(model_params[m.name])
            out.append({"sources": [src]})
        return out
    cuts = sorted(r.sample(range(1, L), r.choice([0, 1, 2]) if L > 2 else r.choice([0, 1])))
    bounds = [0] + cuts + [L]
    members = list(picks) + ([base] if base is not None and base not in picks else [])
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        srcs = []
        for m in members:
            # a source may read other layers than the output position (same length)
            off = r.choice([0, 0, 0, -1, 1])
            aa, bb = a + off, b + off
            if aa < 0 or bb > L:
                aa, bb = a, b
            src = {"model": m.path, "layer_range": [aa, bb]}
            if model_params.get(m.name) and r.random() < 0.8:
                src["parameters"] = copy.deepcopy(model_params[m.name])
            srcs.append(src)
        if method == "slerp":
            r.shuffle(srcs)
        sl = {"sources": srcs}
        if r.random() < 0.3:
            if method == "slerp":
                sl["parameters"] = {"t": value(r, 0.0, 1.0, 0.4, 0.4)}
            elif method in GTA or method in ("linear", "nuslerp"):
                sl["parameters"] = {"weight": value(r, 0.1, 1.0, 0.5, 0.3)}
        out.append(sl)
    # every model needs a weight somewhere for GTA/linear: keep a top-level fallback
    return out


def ensure_weights(rec):
    """mergekit crashes when a required weight is unset; give a top-level default."""
    m = rec["merge_method"]
    if m in GTA or m in ("linear", "nuslerp"):
        rec.setdefault("parameters", {})
        rec["parameters"].setdefault("weight", 0.5)
    if m == "slerp":
        rec.setdefault("parameters", {})
        rec["parameters"].setdefault("t", 0.5)
