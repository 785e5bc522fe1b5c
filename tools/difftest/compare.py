"""Tensor-by-tensor and config comparison of a lamarck output with a mergekit output."""
import json
import math
import os

import numpy as np
import torch
from safetensors.torch import load_file


def load_dir(d):
    """All tensors of a model folder (single file or sharded)."""
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(d, f)))
    return out


def config(d):
    with open(os.path.join(d, "config.json")) as f:
        return json.load(f)


def cfg_dtype(c):
    return c.get("dtype", c.get("torch_dtype"))


ULP_BITS = {torch.bfloat16: 7, torch.float16: 10, torch.float32: 23}


def ulp(x: np.ndarray, dt):
    """Spacing of `dt` at |x| (as float64)."""
    m = ULP_BITS[dt]
    a = np.abs(x).astype(np.float64)
    min_exp = {torch.bfloat16: -126, torch.float16: -14, torch.float32: -126}[dt]
    e = np.floor(np.log2(np.maximum(a, 2.0 ** min_exp)))
    return 2.0 ** (e - m)


def compare_tensors(a_t, b_t, tol_dt):
    """a = lamarck, b = mergekit. Returns dict of metrics and ok flag.

    tol_dt is the coarsest dtype the computation passed through (f32 → abs/rel tolerance,
    16-bit → 2 ulps for 99.9% of elements)."""
    a = a_t.to(torch.float64).numpy()
    b = b_t.to(torch.float64).numpy()
    res = {}
    if a.shape != b.shape:
        return {"ok": False, "why": f"shape {list(a.shape)} vs mergekit {list(b.shape)}"}
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return {"ok": False, "why": f"NaN pattern differs ({int(nan_a.sum())} vs {int(nan_b.sum())})"}
    a = np.where(nan_a, 0, a)
    b = np.where(nan_b, 0, b)
    diff = np.abs(a - b)
    res["max_abs"] = float(diff.max()) if diff.size else 0.0
    rel = diff / np.maximum(np.abs(b), 1e-30)
    res["max_rel"] = float(rel.max()) if diff.size else 0.0
    if tol_dt == torch.float32:
        bad = diff > 1e-6 + 1e-5 * np.abs(b)
        res["bad"] = int(bad.sum())
        res["ok"] = res["bad"] == 0
    else:
        u = ulp(b, tol_dt)
        bad = diff > 2 * u + 1e-30
        res["bad"] = int(bad.sum())
        res["max_ulps"] = float((diff / u).max()) if diff.size else 0.0
        res["ok"] = res["bad"] <= 0.001 * diff.size
    res["n"] = int(diff.size)
    if res["bad"]:
        i = int(np.argmax(diff.reshape(-1)))
        res["worst"] = (float(a.reshape(-1)[i]), float(b.reshape(-1)[i]), i)
    return res


def delta_stats(out, base, names):
    """Keep fraction, L1, mean and std of out − base over the given tensors (f64)."""
    ch, n, l1, s, s2 = 0, 0, 0.0, 0.0, 0.0
    for k in names:
        o, b = out[k].to(torch.float64), base[k].to(torch.float64)
        if o.shape != b.shape:
            continue
        d = (o - b).numpy()
        ch += int((d != 0).sum())
        n += d.size
        l1 += float(np.abs(d).sum())
        s += float(d.sum())
        s2 += float((d * d).sum())
    if n == 0:
        return None
    mean = s / n
    return {"n": n, "frac": ch / n, "l1": l1, "mean": mean, "std": math.sqrt(max(s2 / n - mean * mean, 0))}


def stochastic_ok(sa, sb):
    """Statistical agreement of lamarck (sa) and mergekit (sb) delta statistics."""
    if sa is None or sb is None:
        return True, "no comparable tensors"
    n = sa["n"]
    p = max(min(sb["frac"], 1 - 1e-9), 1e-9)
    bound = 6 * math.sqrt(2 * p * (1 - p) / n) + 0.01
    notes = []
    ok = True
    if abs(sa["frac"] - sb["frac"]) > bound:
        ok = False
        notes.append(f"changed fraction {sa['frac']:.4f} vs {sb['frac']:.4f} (bound {bound:.4f})")
    if sb["l1"] > 0:
        ratio = sa["l1"] / sb["l1"]
        if not (0.85 < ratio < 1.15):
            ok = False
            notes.append(f"L1 ratio {ratio:.3f}")
    if sb["std"] > 0:
        ratio = sa["std"] / sb["std"]
        if not (0.8 < ratio < 1.25):
            ok = False
            notes.append(f"std ratio {ratio:.3f}")
    return ok, "; ".join(notes) or f"frac {sa['frac']:.4f}/{sb['frac']:.4f} L1 {sa['l1'] / max(sb['l1'], 1e-30):.3f}"
