"""Broken recipes and corrupt files: each must fail with a clear error and leave nothing behind.

For every case: exit code != 0, no panic, the message names the culprit (each case lists
words it must contain), `--out` does not exist afterwards (or, for "out exists", is
untouched), and no `.NAME.lamarck-tmp-*` folder is left beside it.
"""
import json
import os
import random
import shutil
import struct
import subprocess

import yaml

import gen


def family(root):
    r = random.Random(12345)
    while True:
        shutil.rmtree(root, ignore_errors=True)
        sh, models = gen.make_family(r, root, n_variants=3)
        if all(m.V == sh.V and m.dt == "f32" and not m.tied for m in models) and sh.L >= 3:
            return sh, models


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n)), f.read()


def st_write(path, header, data, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(data)


def corrupt(model_dir, how):
    p = os.path.join(model_dir, "model.safetensors")
    n, hdr, data = st_header(p)
    names = [k for k in hdr if k != "__metadata__"]
    victim = sorted(names)[len(names) // 2]
    if how == "truncated":
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) - 100)
    elif how == "empty":
        open(p, "wb").close()
    elif how == "header_len_huge":
        with open(p, "r+b") as f:
            f.write(struct.pack("<Q", 1 << 40))
    elif how == "header_not_json":
        st_write(p, None, data, raw_header=b"{not json" + b" " * 20)
    elif how == "offset_outside":
        hdr[victim]["data_offsets"][1] += 10_000
        st_write(p, hdr, data)
    elif how == "overlap":
        a, b = sorted(names)[:2]
        hdr[b]["data_offsets"] = list(hdr[a]["data_offsets"])
        st_write(p, hdr, data)
    elif how == "shape_mismatch":
        hdr[victim]["shape"] = [s + 1 for s in hdr[victim]["shape"]]
        st_write(p, hdr, data)
    elif how == "bad_dtype":
        hdr[victim]["dtype"] = "Q7"
        st_write(p, hdr, data)
    elif how == "missing_tensor":
        b0, b1 = hdr[victim]["data_offsets"]
        del hdr[victim]
        st_write(p, hdr, data)  # keeps the bytes: a hole is allowed, the tensor is gone
    elif how == "wrong_shape_valid":
        # a valid file whose q_proj has another (consistent) shape
        k = next(x for x in sorted(names) if "layers.1.mlp.up_proj.weight" in x)
        b0, b1 = hdr[k]["data_offsets"]
        shp = hdr[k]["shape"]
        hdr[k]["shape"] = [shp[0] // 2, shp[1]]
        hdr[k]["data_offsets"] = [b0, b0 + (b1 - b0) // 2]
        st_write(p, hdr, data)
    elif how == "no_config":
        os.remove(os.path.join(model_dir, "config.json"))
    elif how == "config_not_json":
        with open(os.path.join(model_dir, "config.json"), "w") as f:
            f.write("{ \"architectures\": [")
    elif how == "unsupported_arch":
        c = json.load(open(os.path.join(model_dir, "config.json")))
        c["architectures"] = ["GPT2LMHeadModel"]
        c["model_type"] = "gpt2"
        json.dump(c, open(os.path.join(model_dir, "config.json"), "w"))
    elif how == "index_missing_shard":
        os.rename(p, os.path.join(model_dir, "model-00001-of-00002.safetensors"))
        wm = {k: ("model-00001-of-00002.safetensors" if i % 2 else "model-00002-of-00002.safetensors") for i, k in enumerate(names)}
        json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(model_dir, "model.safetensors.index.json"), "w"))
    elif how == "index_not_json":
        os.rename(p, os.path.join(model_dir, "model-00001-of-00001.safetensors"))
        with open(os.path.join(model_dir, "model.safetensors.index.json"), "w") as f:
            f.write("{\"weight_map\": ")
    elif how == "no_weights":
        os.remove(p)
    else:
        raise ValueError(how)
    return victim


def cases(models, work):
    """(name, recipe docs or text, setup(fn) or None, words the message must contain, extra args)."""
    base, a, b, c = [m.path for m in models[:4]]
    ties = lambda **kw: {"merge_method": "ties", "base_model": base,  # noqa: E731
                         "models": [{"model": a, "parameters": {"weight": 0.5, "density": 0.5}},
                                    {"model": b, "parameters": {"weight": 0.5, "density": 0.5}}], **kw}
    out = []
    out.append(("unknown_top_key", [ties(merge_methd="x")], None, ["merge_methd"]))
    out.append(("unknown_model_key", [{"merge_method": "linear", "models": [{"model": a, "paramters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]}], None, ["paramters", "parameters"]))
    out.append(("unknown_param", [ties(parameters={"densty": 0.5})], None, ["densty", "density"]))
    out.append(("unused_param_linear_density", [{"merge_method": "linear", "models": [{"model": a, "parameters": {"weight": 1, "density": 0.5}}, {"model": b, "parameters": {"weight": 1}}]}], None, ["density"]))
    out.append(("unused_param_ties_t", [ties(parameters={"t": 0.5})], None, ["t"]))
    out.append(("unknown_method", [ties(merge_method="tiez")], None, ["tiez"]))
    out.append(("missing_model", [ties(base_model=os.path.join(work, "nope"))], None, ["nope"]))
    out.append(("missing_base_for_ties", [{"merge_method": "ties", "models": [{"model": a, "parameters": {"weight": 1}}]}], None, ["base_model"]))
    out.append(("slerp_three_models", [{"merge_method": "slerp", "base_model": base, "models": [{"model": base}, {"model": a}, {"model": b}], "parameters": {"t": 0.5}}], None, ["slerp"]))
    out.append(("slerp_no_t", [{"merge_method": "slerp", "base_model": base, "models": [{"model": base}, {"model": a}]}], None, ["t"]))
    out.append(("model_stock_one_model", [{"merge_method": "model_stock", "base_model": base, "models": [{"model": a}]}], None, ["model_stock"]))
    out.append(("passthrough_two_sources", [{"merge_method": "passthrough", "slices": [{"sources": [{"model": a, "layer_range": [0, 2]}, {"model": b, "layer_range": [0, 2]}]}]}], None, ["passthrough"]))
    out.append(("della_eps_too_big", [{"merge_method": "della", "base_model": base, "models": [{"model": a, "parameters": {"weight": 1, "density": 0.9, "epsilon": 0.2}}]}], None, ["epsilon"]))
    out.append(("della_eps_ge_density", [{"merge_method": "della", "base_model": base, "models": [{"model": a, "parameters": {"weight": 1, "density": 0.1, "epsilon": 0.1}}]}], None, ["epsilon"]))
    out.append(("ties_density_zero", [ties(parameters={"density": 0.0})], None, ["density"]))
    out.append(("ties_density_negative", [ties(parameters={"density": -0.5})], None, ["density"]))
    out.append(("bad_dtype_bf16", [ties(dtype="bf16")], None, ["bf16"]))
    out.append(("bad_out_dtype", [ties(out_dtype="float8")], None, ["float8"]))
    out.append(("layer_range_reversed", [{"merge_method": "passthrough", "slices": [{"sources": [{"model": a, "layer_range": [2, 1]}]}]}], None, ["layer_range"]))
    out.append(("layer_range_beyond", [{"merge_method": "passthrough", "slices": [{"sources": [{"model": a, "layer_range": [0, 99]}]}]}], None, ["99"]))
    out.append(("layer_range_negative", [{"merge_method": "passthrough", "slices": [{"sources": [{"model": a, "layer_range": [-1, 1]}]}]}], None, ["layer_range"]))
    out.append(("layer_range_three", [{"merge_method": "passthrough", "slices": [{"sources": [{"model": a, "layer_range": [0, 1, 2]}]}]}], None, ["layer_range"]))
    out.append(("layer_range_unequal", [{"merge_method": "linear", "slices": [{"sources": [{"model": a, "layer_range": [0, 2], "parameters": {"weight": 1}}, {"model": b, "layer_range": [0, 3], "parameters": {"weight": 1}}]}]}], None, ["layer"]))
    out.append(("empty_slices", [{"merge_method": "passthrough", "slices": []}], None, ["slices"]))
    out.append(("models_and_slices", [ties(slices=[{"sources": [{"model": a, "layer_range": [0, 1]}]}])], None, ["slices"]))
    out.append(("no_models", [{"merge_method": "ties", "base_model": base}], None, ["models"]))
    out.append(("weight_string", [ties(parameters={"weight": "half"})], None, ["weight"]))
    out.append(("gradient_empty", [ties(parameters={"weight": []})], None, ["weight"]))
    out.append(("gradient_with_string", [ties(parameters={"weight": [0.1, "x"]})], None, ["weight"]))
    out.append(("conditional_bad_filter", [ties(parameters={"weight": [{"filter": 3, "value": 0.5}]})], None, ["filter"]))
    out.append(("conditional_no_value", [ties(parameters={"weight": [{"filter": "mlp"}]})], None, ["value"]))
    out.append(("conditional_extra_key", [ties(parameters={"weight": [{"filter": "mlp", "value": 0.5, "vaule": 1}]})], None, ["vaule"]))
    out.append(("global_param_per_model", [ties(models=[{"model": a, "parameters": {"weight": 0.5, "lambda": 0.5}}, {"model": b, "parameters": {"weight": 0.5}}])], None, ["lambda"]))
    out.append(("tokenizer_union", [ties(tokenizer_source="union")], None, ["union"]))
    out.append(("tokenizer_missing_model", [ties(tokenizer_source=os.path.join(work, "nowhere"))], None, ["nowhere"]))
    out.append(("yaml_syntax", "merge_method: ties\nmodels: [\n  - {model: x\n", None, ["yaml"]))
    out.append(("yaml_not_mapping", "- just\n- a list\n", None, ["mapping"]))
    out.append(("empty_file", "", None, ["empty"]))
    cyc = [{"name": "s1", "merge_method": "linear", "models": [{"model": "s2", "parameters": {"weight": 1}}, {"model": a, "parameters": {"weight": 1}}]},
           {"name": "s2", "merge_method": "linear", "models": [{"model": "s1", "parameters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]},
           {"merge_method": "linear", "models": [{"model": "s1", "parameters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]}]
    out.append(("cycle", cyc, None, ["s1", "s2"]))
    selfref = [{"name": "s1", "merge_method": "linear", "models": [{"model": "s1", "parameters": {"weight": 1}}, {"model": a, "parameters": {"weight": 1}}]},
               {"merge_method": "linear", "models": [{"model": "s1", "parameters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]}]
    out.append(("self_cycle", selfref, None, ["s1"]))
    dup = [{"name": "s1", "merge_method": "linear", "models": [{"model": a, "parameters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]}] * 2 + [
        {"merge_method": "linear", "models": [{"model": "s1", "parameters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]}]
    out.append(("duplicate_names", dup, None, ["s1"]))
    two = [{"merge_method": "linear", "models": [{"model": a, "parameters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]}] * 2
    out.append(("two_unnamed", two, None, ["unnamed"]))
    # stage 2 fails after stage 1 has run: the final --out must still not exist
    late = [{"name": "s1", "merge_method": "linear", "models": [{"model": a, "parameters": {"weight": 1}}, {"model": b, "parameters": {"weight": 1}}]},
            {"merge_method": "ties", "base_model": base, "models": [{"model": "s1", "parameters": {"weight": 1, "density": 0.5}}, {"model": "BROKEN", "parameters": {"weight": 1}}]}]
    out.append(("late_stage_corrupt", late, "late", ["model.safetensors"]))
    for how in ["truncated", "empty", "header_len_huge", "header_not_json", "offset_outside", "overlap",
                "shape_mismatch", "bad_dtype", "missing_tensor", "wrong_shape_valid", "no_config",
                "config_not_json", "unsupported_arch", "index_missing_shard", "index_not_json", "no_weights"]:
        words = {"no_config": ["config.json"], "config_not_json": ["config.json"],
                 "unsupported_arch": ["GPT2LMHeadModel", "Qwen2ForCausalLM"],
                 "index_missing_shard": ["model-00002-of-00002"], "index_not_json": ["index.json"],
                 "no_weights": ["safetensors"], "missing_tensor": ["VICTIM"], "wrong_shape_valid": ["up_proj"]}.get(how, ["model.safetensors"])
        out.append((f"corrupt_{how}", [ties(models=[{"model": "BROKEN", "parameters": {"weight": 0.5, "density": 0.5}}, {"model": b, "parameters": {"weight": 0.5, "density": 0.5}}])], how, words))
    out.append(("out_exists", [ties()], "out_exists", ["exist"]))
    out.append(("model_map_missing_dir", [ties(base_model="org/base")], "model_map", ["org/base"]))
    return out


# Nonsense that mergekit 0.1.5 accepts silently (returns the base); lamarck may too.
LENIENT = {"ties_density_zero", "ties_density_negative"}


def main(work, lamarck):
    root = os.path.join(work, "battery")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    sh, models = family(os.path.join(root, "models"))
    results = []
    for name, docs, setup, words in cases(models, root):
        d = os.path.join(root, name)
        os.makedirs(d)
        outp = os.path.join(d, "out")
        extra = []
        text = docs if isinstance(docs, str) else "---\n".join(yaml.safe_dump(x, sort_keys=False) for x in docs)
        if setup and setup not in ("out_exists", "model_map"):
            broken = copy_model(models[1].path, os.path.join(d, "broken-model"))
            victim = corrupt(broken, "truncated" if setup == "late" else setup)
            words = [victim if w == "VICTIM" else w for w in words]
            text = text.replace("BROKEN", broken)
        if setup == "out_exists":
            os.makedirs(outp)
            with open(os.path.join(outp, "keep.txt"), "w") as f:
                f.write("precious")
        if setup == "model_map":
            mm = os.path.join(d, "map.yaml")
            with open(mm, "w") as f:
                yaml.safe_dump({"org/base": os.path.join(d, "not-there")}, f)
            extra = ["--model-map", mm]
        recipe = os.path.join(d, "recipe.yaml")
        with open(recipe, "w") as f:
            f.write(text)
        before = set(os.listdir(d))
        p = subprocess.run([lamarck, "merge", recipe, "--out", outp, *extra], capture_output=True, text=True, timeout=120)
        msg = (p.stdout + p.stderr).strip()
        after = set(os.listdir(d))
        problems = []
        if p.returncode == 0:
            problems.append("exit code 0")
        if "panicked" in msg or "RUST_BACKTRACE" in msg:
            problems.append("panic")
        low = msg.lower()
        missing = [w for w in words if w.lower() not in low]
        if missing:
            problems.append(f"message lacks {missing}")
        leftovers = [x for x in after - before if "lamarck-tmp" in x or x == "out"]
        if setup == "out_exists":
            if sorted(os.listdir(outp)) != ["keep.txt"]:
                problems.append("existing --out was modified")
        elif os.path.exists(outp):
            problems.append("--out exists after failure")
        if leftovers and setup != "out_exists":
            problems.append(f"left behind {sorted(leftovers)}")
        tmp_any = [x for x in os.listdir(d) if "lamarck-tmp" in x]
        if tmp_any:
            problems.append(f"temp folders {tmp_any}")
        last = [ln for ln in msg.splitlines() if ln.strip()]
        shown = " | ".join(last[-3:])[:400]
        if name in LENIENT and p.returncode == 0:
            problems = []  # mergekit 0.1.5 accepts these too; noted in the findings
            shown = "accepted (as mergekit 0.1.5 does): " + shown
        results.append({"case": name, "rc": p.returncode, "ok": not problems, "problems": problems, "message": shown})
        print(f"{'ok  ' if not problems else 'FAIL'} {name:32s} rc={p.returncode} {'; '.join(problems)}\n      {shown}", flush=True)
    with open(os.path.join(work, "battery.json"), "w") as f:
        json.dump(results, f, indent=1)
    bad = sum(not r["ok"] for r in results)
    print(f"{len(results) - bad}/{len(results)} battery cases ok")
    return 1 if bad else 0
