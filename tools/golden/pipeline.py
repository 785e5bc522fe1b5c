"""End-to-end golden for the merge pipeline, from mergekit 0.1.5's `mergekit-multi`.

Run from the repository root with the mergekit venv:

    /work/pyenv/bin/python tools/golden/pipeline.py

Inputs (committed): tests/golden/pipeline/models/{base,ft-dense,ft-sparse}, written by
`lamarck synth --preset tiny --layers 6 --untied --dtype f32 --seed 3
 --only base,ft-dense,ft-sparse --out tests/golden/pipeline/models`, and
tests/golden/pipeline/recipe.yaml (two stages: TIES over two slices with gradient,
filtered and slice-level parameters; then SLERP of the base with that stage over
overlapping slices [0, 4] + [3, 5]: 6 output layers, output layer 4 = input layer 3;
the layer count is kept at 6 because mergekit 0.1.5 under transformers 5 fails to save
a config whose `num_hidden_layers` differs from its `layer_types`).

The recipe names models `base`, `ft-dense`, `ft-sparse`; for mergekit they are
replaced by absolute folder paths. Writes tests/golden/pipeline/stage-ties.safetensors
and final.safetensors (every output tensor of each stage, f32) and final-config.json.
tests/merge_golden.rs runs `lamarck merge` on the same recipe and compares.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from safetensors.torch import load_file, save_file

ROOT = "tests/golden/pipeline"
models = os.path.abspath(os.path.join(ROOT, "models"))
text = open(os.path.join(ROOT, "recipe.yaml")).read()
for name in ["ft-dense", "ft-sparse", "base"]:
    text = re.sub(r"(model: |base_model: )" + name + r"\b", r"\g<1>" + os.path.join(models, name), text)

with tempfile.TemporaryDirectory() as tmp:
    recipe = os.path.join(tmp, "recipe.yaml")
    open(recipe, "w").write(text)
    out = os.path.join(tmp, "final")
    inter = os.path.join(tmp, "inter")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    exe = os.path.join(os.path.dirname(sys.executable), "mergekit-multi")
    subprocess.run([exe, recipe, "--intermediate-dir", inter, "--out-path", out], check=True, env=env)

    def tensors(folder):
        result = {}
        for f in sorted(os.listdir(folder)):
            if f.endswith(".safetensors"):
                result.update(load_file(os.path.join(folder, f)))
        return {k: v.float().contiguous() for k, v in result.items()}

    save_file(tensors(os.path.join(inter, "stage-ties")), os.path.join(ROOT, "stage-ties.safetensors"))
    save_file(tensors(out), os.path.join(ROOT, "final.safetensors"))
    shutil.copy(os.path.join(out, "config.json"), os.path.join(ROOT, "final-config.json"))
print("ok")
