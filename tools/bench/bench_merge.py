"""Merge benchmark: lamarck vs mergekit 0.1.5 vs the I/O floor, on 0.5B-shaped bf16 models.

Run through tools/bench/bench_merge.sh (it builds lamarck and provides mergekit); directly:

    python3 tools/bench/bench_merge.py --lamarck target/release/lamarck \
        --mergekit-bin /path/to/venv/bin [--work target/bench-merge] [--cache cold|warm]

Standard library only (the mergekit venv's python is fine, any python3 works).

What it does, in one run:
1. `lamarck synth --preset qwen2-0-5b` writes a family (base + 3 fine-tunes: ft-dense,
   ft-sparse, ft-lowrank; bf16, Qwen2.5-0.5B's shape) and the same at twice the depth
   (48 layers) for the memory check. Reused when already present (same seed, same bytes).
2. For each recipe (ties, della, della_linear, model_stock, slerp, a 3-stage della → slerp →
   ties: every method of the Lamarck recipe), in this order:
   the I/O floor, lamarck, mergekit (`--repeat N`: the floor and lamarck N times each,
   alternating, the fastest of each reported and lamarck's slowest beside it; mergekit,
   minutes a run, once, and compared with lamarck's slowest). Each is timed from a cold
   page cache for the model files (see "Page cache" below); wall time includes an fsync
   of every output file (lamarck fsyncs its own output; mergekit does not, so the harness
   does it inside its timing).
3. lamarck alone on the 48-layer family (ties and della), to show that peak RSS does not
   grow with the model.
4. Prints a table and writes WORK/results.json and WORK/results.md.

I/O floor: the same file traffic with no computation: read every input file of a stage
once (sequentially, 16 MiB reads), write one output of the stage's output size (16 MiB
writes) and fsync it; for the 3-stage recipe, stage by stage (so later stages read the
earlier stage outputs from the page cache, as the merge tools do).

Page cache (`--cache cold`, the default): before every timed run, each model file (the
families and all previous outputs) is fsynced and evicted from the page cache with
posix_fadvise(POSIX_FADV_DONTNEED), which needs no root and touches only these files.
So the floor and both tools read the inputs from the disk. `--cache warm` instead reads
every input once before each run (all fit in RAM), measuring the in-memory case (a search
loop re-merging the same parents).

Peak RSS: ru_maxrss of the tool's process from wait4() (resident set, which includes
file pages it has mapped: an mmap reader that keeps whole inputs mapped shows them here).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

FAMILY = ["base", "ft-dense", "ft-sparse", "ft-lowrank"]
CHUNK = 16 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- recipes


def yaml_doc(d, indent=0):
    """A minimal YAML writer for the recipe dicts below (no dependency on PyYAML)."""
    pad = "  " * indent
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out.append(yaml_doc(v, indent + 1))
        elif isinstance(v, list):
            out.append(f"{pad}{k}:")
            for item in v:
                if isinstance(item, dict):
                    body = yaml_doc(item, indent + 2).lstrip()
                    out.append(f"{pad}  - {body}")
                else:
                    out.append(f"{pad}  - {json.dumps(item)}")
        else:
            out.append(f"{pad}{k}: {json.dumps(v)}")
    return "\n".join(out)


def recipes(fam, layers):
    m = lambda name: os.path.join(fam, name)  # noqa: E731
    t_grad = {"t": [{"filter": "self_attn", "value": [0.0, 0.5, 1.0]},
                    {"filter": "mlp", "value": [1.0, 0.5, 0.0]},
                    {"value": 0.5}]}
    ties = {
        "merge_method": "ties",
        "base_model": m("base"),
        "dtype": "bfloat16",
        "parameters": {"normalize": True},
        "models": [
            {"model": m("ft-dense"), "parameters": {"weight": 0.5, "density": 0.5}},
            {"model": m("ft-sparse"), "parameters": {"weight": 0.3, "density": 0.5}},
            {"model": m("ft-lowrank"), "parameters": {"weight": 0.2, "density": 0.5}},
        ],
    }
    della = {
        "merge_method": "della",
        "base_model": m("base"),
        "dtype": "bfloat16",
        "parameters": {"density": 0.5, "epsilon": 0.1},
        "models": [
            {"model": m("ft-dense"), "parameters": {"weight": 0.5}},
            {"model": m("ft-sparse"), "parameters": {"weight": 0.3}},
            {"model": m("ft-lowrank"), "parameters": {"weight": 0.2}},
        ],
    }
    della_linear = {
        "merge_method": "della_linear",
        "base_model": m("base"),
        "dtype": "bfloat16",
        "parameters": {"density": 0.6, "epsilon": 0.15, "lambda": 1.0},
        "models": [
            {"model": m("ft-dense"), "parameters": {"weight": 0.5}},
            {"model": m("ft-sparse"), "parameters": {"weight": 0.3}},
            {"model": m("ft-lowrank"), "parameters": {"weight": 0.2}},
        ],
    }
    model_stock = {
        "merge_method": "model_stock",
        "base_model": m("base"),
        "dtype": "bfloat16",
        "models": [{"model": m("ft-dense")}, {"model": m("ft-sparse")},
                   {"model": m("ft-lowrank")}],
    }
    slerp = {
        "merge_method": "slerp",
        "base_model": m("base"),
        "dtype": "bfloat16",
        "parameters": t_grad,
        "models": [{"model": m("base")}, {"model": m("ft-dense")}],
    }
    stage1 = {
        "name": "stage1-della",
        "merge_method": "della",
        "base_model": m("base"),
        "dtype": "bfloat16",
        "parameters": {"density": 0.5, "epsilon": 0.1},
        "models": [
            {"model": m("ft-dense"), "parameters": {"weight": 0.6}},
            {"model": m("ft-sparse"), "parameters": {"weight": 0.4}},
        ],
    }
    stage2 = {
        "name": "stage2-slerp",
        "merge_method": "slerp",
        "base_model": "stage1-della",
        "dtype": "bfloat16",
        "parameters": t_grad,
        "slices": [{"sources": [
            {"model": "stage1-della", "layer_range": [0, layers]},
            {"model": m("ft-lowrank"), "layer_range": [0, layers]},
        ]}],
    }
    final = {
        "merge_method": "ties",
        "base_model": m("base"),
        "dtype": "bfloat16",
        "parameters": {"normalize": True},
        "models": [
            {"model": "stage2-slerp", "parameters": {"weight": 1.0, "density": 0.7}},
            {"model": "stage1-della", "parameters": {"weight": 0.5, "density": 0.5}},
            {"model": m("ft-sparse"), "parameters": {"weight": 0.3, "density": 0.4}},
        ],
    }
    # Stage I/O for the floor: (inputs, output) per stage; "@name" = an earlier stage.
    one = lambda r: [([x["model"] for x in r["models"]] + [r["base_model"]], "@out")]  # noqa: E731
    return {
        "ties": ([ties], one(ties)),
        "della": ([della], one(della)),
        "della_linear": ([della_linear], one(della_linear)),
        "model_stock": ([model_stock], one(model_stock)),
        "slerp": ([slerp], one(slerp)),
        "3-stage": ([stage1, stage2, final], [
            ([m("ft-dense"), m("ft-sparse"), m("base")], "@stage1-della"),
            (["@stage1-della", m("ft-lowrank")], "@stage2-slerp"),
            (["@stage2-slerp", "@stage1-della", m("ft-sparse"), m("base")], "@out"),
        ]),
    }


def write_recipe(path, docs):
    with open(path, "w") as f:
        f.write("\n---\n".join(yaml_doc(d) for d in docs) + "\n")


# ---------------------------------------------------------------- files and cache


def model_files(path):
    out = []
    for root, _dirs, files in os.walk(path):
        out.extend(os.path.join(root, f) for f in files)
    return sorted(out)


def weight_files(path):
    return [f for f in model_files(path) if f.endswith(".safetensors")]


def fsync_tree(path):
    for f in model_files(path):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def evict(paths):
    """fsync, then drop these files' pages from the page cache."""
    for p in paths:
        if not os.path.exists(p):
            continue
        for f in model_files(p):
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_all(path, buf):
    n = 0
    for f in weight_files(path):
        with open(f, "rb", buffering=0) as fh:
            while True:
                k = fh.readinto(buf)
                if not k:
                    break
                n += k
    return n


def dir_size(path):
    return sum(os.path.getsize(f) for f in weight_files(path))


# ---------------------------------------------------------------- timed runs


def timed(cmd, env=None, outputs=()):
    """Run cmd; wall seconds (including an fsync of `outputs`) and peak RSS in MiB."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    captured = proc.stdout.read()
    _pid, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    for o in outputs:
        if os.path.exists(o):
            fsync_tree(o)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        log(captured.decode(errors="replace")[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, ru.ru_maxrss / 1024.0


def io_floor(stages, out_dir):
    """Read each stage's inputs once, write its output size; returns seconds."""
    buf = bytearray(CHUNK)
    start = time.perf_counter()
    written = {}
    for inputs, output in stages:
        size = 0
        for i in dict.fromkeys(inputs):  # every distinct input once
            path = written[i] if i.startswith("@") else i
            read_all(path, buf)
            if size == 0:
                size = dir_size(path)
        target = os.path.join(out_dir, output.lstrip("@"))
        os.makedirs(target, exist_ok=True)
        fname = os.path.join(target, "model.safetensors")
        fd = os.open(fname, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            left = size
            view = memoryview(buf)
            while left > 0:
                k = os.write(fd, view[: min(CHUNK, left)])
                left -= k
            os.fsync(fd)
        finally:
            os.close(fd)
        written[output] = target
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lamarck", required=True)
    ap.add_argument("--mergekit-bin", help="folder with mergekit-yaml / mergekit-multi")
    ap.add_argument("--work", default="target/bench-merge")
    ap.add_argument("--cache", choices=["cold", "warm"], default="cold")
    ap.add_argument("--only", default="ties,della,della_linear,model_stock,slerp,3-stage")
    ap.add_argument("--no-double", action="store_true", help="skip the 48-layer runs")
    ap.add_argument("--threads", type=int, default=0, help="lamarck --threads (0 = all cores)")
    ap.add_argument("--max-memory", default="1G", help="lamarck --max-memory (default 1G)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time the floor and lamarck this many times each, alternating, and "
                         "report the fastest (mergekit runs once)")
    args = ap.parse_args()
    repeat = max(1, args.repeat)
    work = os.path.abspath(args.work)
    lamarck = os.path.abspath(args.lamarck)
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    families = {24: os.path.join(work, "family-24"), 48: os.path.join(work, "family-48")}
    wanted = [24] if args.no_double else [24, 48]
    for layers in wanted:
        fam = families[layers]
        if all(os.path.exists(os.path.join(fam, n, "config.json")) for n in FAMILY):
            continue
        log(f"synth: writing the {layers}-layer family into {fam}")
        subprocess.run([lamarck, "synth", "--preset", "qwen2-0-5b", "--layers", str(layers),
                        "--seed", "7", "--only", ",".join(FAMILY), "--out", fam, "--force"],
                       check=True)

    outs = os.path.join(work, "out")
    shutil.rmtree(outs, ignore_errors=True)
    os.makedirs(outs)
    all_models = [os.path.join(families[l], n) for l in wanted for n in FAMILY]

    def prepare(extra=()):
        paths = all_models + [os.path.join(outs, d) for d in os.listdir(outs)] + list(extra)
        if args.cache == "cold":
            evict(paths)
        else:
            buf = bytearray(CHUNK)
            for p in all_models:
                read_all(p, buf)

    rows = []
    for layers in wanted:
        fam = families[layers]
        table = recipes(fam, layers)
        names = [n for n in args.only.split(",") if n in table]
        if layers == 48:
            names = [n for n in names if n in ("ties", "della")]
        for name in names:
            docs, stages = table[name]
            tag = f"{name}" if layers == 24 else f"{name} ({layers} layers)"
            rdir = os.path.join(work, "recipes")
            os.makedirs(rdir, exist_ok=True)
            recipe = os.path.join(rdir, f"{name}-{layers}.yaml")
            write_recipe(recipe, docs)
            row = {"recipe": tag, "layers": layers, "input_bytes": 0}
            row["input_bytes"] = sum(dir_size(os.path.join(fam, n)) for n in FAMILY)

            floors, runs, rss = [], [], []
            for _ in range(repeat):
                prepare()
                fl = os.path.join(outs, "floor")
                floors.append(io_floor(stages, fl))
                shutil.rmtree(fl)

                prepare()
                out = os.path.join(outs, "lamarck")
                sd = os.path.join(outs, "lamarck-stages")
                cmd = [lamarck, "merge", recipe, "--out", out, "--force", "--no-reuse",
                       "--stages-dir", sd, "--threads", str(args.threads),
                       "--max-memory", args.max_memory]
                t, m = timed(cmd, env, [out, sd])
                runs.append(t)
                rss.append(m)
                row["output_bytes"] = dir_size(out)
                shutil.rmtree(out)
                shutil.rmtree(sd, ignore_errors=True)
            row["floor_s"], row["lamarck_s"] = min(floors), min(runs)
            row["lamarck_max_s"], row["lamarck_rss_mib"] = max(runs), max(rss)
            row["floor_runs_s"], row["lamarck_runs_s"] = floors, runs

            if args.mergekit_bin and layers == 24:
                prepare()
                out = os.path.join(outs, "mergekit")
                inter = os.path.join(outs, "mergekit-stages")
                if len(docs) == 1:
                    cmd = [os.path.join(args.mergekit_bin, "mergekit-yaml"), recipe, out, "--quiet"]
                else:
                    cmd = [os.path.join(args.mergekit_bin, "mergekit-multi"), recipe,
                           "--intermediate-dir", inter, "--out-path", out, "--quiet"]
                row["mergekit_s"], row["mergekit_rss_mib"] = timed(cmd, env, [out, inter])
                shutil.rmtree(out)
                shutil.rmtree(inter, ignore_errors=True)
            rows.append(row)
            log(json.dumps(row))

    lines = [
        f"cache: {args.cache}; cores: {os.cpu_count()}; lamarck threads: {args.threads or 'all'}; "
        f"lamarck --max-memory {args.max_memory}"
        + (f"; floor and lamarck: fastest of {repeat} (alternated), lamarck's slowest in "
           f"brackets; mergekit / lamarck from lamarck's slowest" if repeat > 1 else ""),
        "",
        "| recipe | I/O floor s | lamarck s | lamarck / floor | mergekit s | mergekit / lamarck "
        "| lamarck peak RSS MiB | mergekit peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mk = r.get("mergekit_s")
        slow = r["lamarck_max_s"]
        lines.append(
            f"| {r['recipe']} | {r['floor_s']:.1f} | {r['lamarck_s']:.1f}"
            + (f" ({slow:.1f})" if repeat > 1 else "")
            + f" | {r['lamarck_s'] / r['floor_s']:.2f} | "
            + (f"{mk:.1f} | {mk / slow:.1f} | " if mk else "– | – | ")
            + f"{r['lamarck_rss_mib']:.0f} | "
            + (f"{r['mergekit_rss_mib']:.0f} |" if mk else "– |")
        )
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump({"cache": args.cache, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
