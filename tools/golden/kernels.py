"""Kernel goldens from mergekit 0.1.5's own merge-method objects.

Run from the repository root with the mergekit venv:

    /work/pyenv/bin/python tools/golden/kernels.py

Writes tests/golden/kernels/kernels.safetensors (inputs and outputs in the
case's compute dtype, f32 or bf16) and tests/golden/kernels/cases.json (one entry
per case: method, compute dtype, shape, input set, global and per-model parameters, output
tensor names). tests/kernels_golden.rs replays every case through lamarck's kernels.

Each method is called exactly as mergekit's planner calls it: a TensorGroup (base flagged),
resolved parameters, and `dtype=` the compute dtype (inputs cast to it first).
"""
import json
import os

import mergekit
import numpy as np
import torch
from mergekit.merge_methods.base import TensorGroup
from mergekit.merge_methods.registry import get
from safetensors.torch import save_file

assert mergekit.__version__ if hasattr(mergekit, "__version__") else True
OUT_DIR = "tests/golden/kernels"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

rng = np.random.default_rng(20261126)
tensors = {}
cases = []


def gen_deltas(kind, shape, k):
    """k task vectors of one kind: dense, sparse, lowrank, conflict, quantized."""
    n = int(np.prod(shape))
    out = []
    for i in range(k):
        if kind == "dense":
            d = rng.normal(0, 0.02, shape)
        elif kind == "sparse":
            d = rng.normal(0, 0.03, shape) * (rng.random(shape) < 0.15)
        elif kind == "lowrank":
            if len(shape) == 2:
                u = rng.normal(0, 0.1, (shape[0], 2))
                v = rng.normal(0, 0.1, (2, shape[1]))
                d = u @ v
            else:
                d = rng.normal(0, 0.02, shape)
        elif kind == "conflict":
            if i == 0:
                d = rng.normal(0, 0.02, shape)
                first = d
            else:
                d = -(0.5 + 0.3 * i) * first + rng.normal(0, 0.01, shape)
        elif kind == "quantized":
            # few distinct magnitudes: exercises the tie rule of top-k / outlier selection
            d = rng.integers(-4, 5, shape) * 0.01
        else:
            raise ValueError(kind)
        out.append(d)
    assert all(x.size == n for x in out)
    return out


def make_input_set(name, shape, kind, k, dtype):
    base = rng.normal(0, 0.1, shape)
    models = [base + d for d in gen_deltas(kind, shape, k)]
    t = DTYPES[dtype]
    base_t = torch.tensor(base, dtype=torch.float32).to(t)
    models_t = [torch.tensor(m, dtype=torch.float32).to(t) for m in models]
    tensors[f"inputs/{name}.base"] = base_t.contiguous()
    for i, m in enumerate(models_t):
        tensors[f"inputs/{name}.m{i}"] = m.contiguous()
    return {"name": name, "shape": list(shape), "models": k, "dtype": dtype}


input_sets = {}


def input_set(shape, kind, k, dtype):
    key = f"{kind}_{'x'.join(map(str, shape))}_{k}_{dtype}"
    if key not in input_sets:
        input_sets[key] = make_input_set(key, shape, kind, k, dtype)
    return input_sets[key]


def run_case(name, method, iset, glob, per_model, uses_base=True, base_as_input=False, seeds=None):
    """per_model: list (one dict per non-base model) of per-model parameters."""
    dtype = DTYPES[iset["dtype"]]
    base = tensors[f"inputs/{iset['name']}.base"].to(dtype)
    models = [tensors[f"inputs/{iset['name']}.m{i}"].to(dtype) for i in range(iset["models"])]
    m = get(method)
    params = dict(glob)
    keys = sorted({k for d in per_model for k in d})
    for k in keys:
        params[k] = [d[k] for d in per_model]
    if base_as_input:
        group = TensorGroup.from_tensors(models + [base])
    elif uses_base:
        group = TensorGroup.from_tensors([base] + models, base_index=0)
    else:
        group = TensorGroup.from_tensors(models)
    outputs = []
    for seed in seeds or [None]:
        if seed is not None:
            torch.manual_seed(seed)
        (out,) = m([group], parameters=params, dtype=dtype)
        assert out.dtype == dtype, (name, out.dtype)
        tname = f"cases/{name}.out" + ("" if seed is None else f".s{seed}")
        tensors[tname] = out.contiguous().clone()
        outputs.append(tname)
    cases.append(
        {
            "name": name,
            "method": method,
            "dtype": iset["dtype"],
            "input_set": iset["name"],
            "shape": iset["shape"],
            "models": iset["models"],
            "base": "input" if base_as_input else ("base" if uses_base else "none"),
            "global": glob,
            "per_model": per_model,
            "outputs": outputs,
            "stochastic": seeds is not None,
        }
    )


def w(*ws, **extra):
    res = []
    for i, x in enumerate(ws):
        d = {"weight": x}
        for k, v in extra.items():
            d[k] = v[i] if isinstance(v, (list, tuple)) else v
        res.append(d)
    return res


for dt in ["float32", "bfloat16"]:
    S = (16, 32)
    for kind in ["dense", "sparse", "lowrank", "conflict", "quantized"]:
        iset = input_set(S, kind, 3, dt)
        tag = f"{kind}_{dt}"
        run_case(f"task_arithmetic_{tag}", "task_arithmetic", iset, {}, w(0.6, 0.3, 0.5))
        run_case(f"ties_{tag}", "ties", iset, {}, w(0.6, 0.3, 0.5, density=[0.5, 0.3, 0.7]))
        run_case(f"breadcrumbs_{tag}", "breadcrumbs", iset, {}, w(0.6, 0.3, 0.5, density=[0.6, 0.5, 0.4], gamma=0.05))
        run_case(f"breadcrumbs_ties_{tag}", "breadcrumbs_ties", iset, {"normalize": True}, w(0.6, 0.3, 0.5, density=0.5, gamma=[0.02, 0.1, 0.0]))
        run_case(f"linear_{tag}", "linear", iset, {}, w(0.5, 0.3, 0.2, 0.4), base_as_input=True)
        run_case(f"model_stock_{tag}", "model_stock", iset, {}, [])
    # more shapes and parameter corners on dense/conflict inputs
    for shape in [(64,), (7, 13), (32, 48)]:
        iset = input_set(shape, "dense", 2, dt)
        tag = f"{'x'.join(map(str, shape))}_{dt}"
        run_case(f"ties_rescale_lambda_{tag}", "ties", iset, {"rescale": True, "lambda": 0.8, "normalize": False}, w(0.7, -0.4, density=[0.25, 0.6]))
        run_case(f"ties_tiny_density_{tag}", "ties", iset, {}, w(1.0, 1.0, density=[0.01, 0.001]))
        run_case(f"task_arithmetic_normalize_{tag}", "task_arithmetic", iset, {"normalize": True, "lambda": 1.3}, w(0.3, 0.45))
        run_case(f"breadcrumbs_gamma0_{tag}", "breadcrumbs", iset, {"rescale": True}, w(0.5, 0.5, density=0.4, gamma=0.0))
        run_case(f"breadcrumbs_overlap_{tag}", "breadcrumbs", iset, {}, w(1.0, 1.0, density=0.9, gamma=0.2))
        run_case(f"slerp_t03_{tag}", "slerp", iset | {"models": 1}, {"t": 0.3}, [])
        run_case(f"slerp_t085_{tag}", "slerp", iset | {"models": 1}, {"t": 0.85}, [])
        run_case(f"nuslerp_flat_{tag}", "nuslerp", iset, {}, w(0.4, 0.9), uses_base=False)
        run_case(f"nuslerp_base_{tag}", "nuslerp", iset, {}, w(0.7, 0.5))
        run_case(f"nuslerp_rows_{tag}", "nuslerp", iset, {"nuslerp_flatten": False}, w(0.4, 0.9), uses_base=False)
        run_case(f"nuslerp_cols_{tag}", "nuslerp", iset, {"nuslerp_flatten": False, "nuslerp_row_wise": True}, w(0.4, 0.9))
        run_case(f"model_stock_filterwise_{tag}", "model_stock", iset, {"filter_wise": True}, [])
        run_case(f"linear_nonorm_{tag}", "linear", iset, {"normalize": False}, w(0.7, -0.2, 0.3), base_as_input=True)
        run_case(f"passthrough_{tag}", "passthrough", iset | {"models": 1}, {}, [{"scale": 0.5}], uses_base=False)
        run_case(f"passthrough_noscale_{tag}", "passthrough", iset | {"models": 1}, {}, [{}], uses_base=False)
        # density 1: the random methods are deterministic
        for method in ["dare_ties", "dare_linear", "della", "della_linear"]:
            run_case(f"{method}_density1_{tag}", method, iset, {}, w(0.6, 0.3, density=1.0))

# Stochastic: DARE/DELLA, several torch seeds each. One-model cases isolate the keep
# fraction / rank ramp / L1; two-model cases give the merged delta's mean and spread.
for dt in ["float32", "bfloat16"]:
    one = input_set((32, 128), "dense", 1, dt)
    two = input_set((32, 128), "dense", 2, dt)
    seeds = [1, 2]
    run_case(f"dare_linear_norescale_{dt}", "dare_linear", one, {"rescale": False}, w(1.0, density=0.3), seeds=seeds)
    run_case(f"dare_linear_rescale_{dt}", "dare_linear", one, {}, w(1.0, density=0.3), seeds=seeds)
    run_case(f"della_linear_norescale_{dt}", "della_linear", one, {"rescale": False}, w(1.0, density=0.4, epsilon=0.2), seeds=seeds)
    run_case(f"della_linear_rescale_{dt}", "della_linear", one, {}, w(1.0, density=0.4, epsilon=0.2), seeds=seeds)
    run_case(f"della_linear_eps0_{dt}", "della_linear", one, {"rescale": False}, w(1.0, density=0.3, epsilon=0.0), seeds=seeds)
    run_case(f"dare_ties_{dt}", "dare_ties", two, {"normalize": True}, w(0.6, 0.4, density=0.5), seeds=seeds)
    run_case(f"della_{dt}", "della", two, {}, w(0.6, 0.4, density=0.5, epsilon=0.15), seeds=seeds)

# torch's CPU sort order among equal values (what ops::torch_sort replays): tie-heavy
# vectors, argsort both ways, indices stored as f32 (exact below 2**24).
sort_rng = np.random.default_rng(99)
for i, (n, levels) in enumerate([(100, 5), (1000, 12), (4000, 40), (6000, 300)]):
    v = torch.tensor(sort_rng.integers(0, levels, n) * 0.125, dtype=torch.float32)
    tensors[f"sort/{i}.values"] = v
    tensors[f"sort/{i}.desc"] = torch.argsort(v, descending=True).float()
    tensors[f"sort/{i}.asc"] = torch.sort(v, descending=False).indices.float()

os.makedirs(OUT_DIR, exist_ok=True)
save_file(tensors, f"{OUT_DIR}/kernels.safetensors", metadata={"mergekit": "0.1.5", "torch": torch.__version__})
with open(f"{OUT_DIR}/cases.json", "w") as f:
    json.dump({"mergekit": "0.1.5", "torch": torch.__version__, "cases": cases}, f, indent=1)
print(len(cases), "cases,", len(tensors), "tensors,", os.path.getsize(f"{OUT_DIR}/kernels.safetensors"), "bytes")
