"""Golden numbers for lamarck's built-in lm-eval hooks, made by lm-eval's own functions.

Writes tests/fixtures/lm-eval/*.json: each holds the inputs (fixture documents,
log-likelihoods, responses, item scores) and what lm-eval 0.4.13 (and tinyBenchmarks, for
gp-IRT) return for them. No model is involved: the hooks are pure Python. Run once, in a
throwaway venv; tests and CI read only the JSON:

    python3 -m venv /work/venv-lmeval
    /work/venv-lmeval/bin/pip install --no-deps lm-eval==0.4.13
    /work/venv-lmeval/bin/pip install numpy scipy
    git clone https://github.com/felipemaiapolo/tinyBenchmarks /tmp/tb   # e9a8b10
    /work/venv-lmeval/bin/pip install --no-deps /tmp/tb
    /work/venv-lmeval/bin/python tools/lm-eval/make_hook_goldens.py

The task utils import `datasets`, `sacrebleu` and `rouge_score` at module level without
using them in the functions called here, so those are stubbed (`datasets.Dataset.map`
by what it does: merge the returned columns into each row).
"""

import importlib.util
import json
import os
import pickle
import random
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "lm-eval"


class _Dataset:
    def __init__(self, rows):
        self.rows = rows

    def map(self, f):
        return [{**r, **f(r)} for r in self.rows]


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    return mod


_stub("datasets", Dataset=_Dataset)
_stub("sacrebleu")
rouge = _stub("rouge_score")
rouge.rouge_scorer = _stub("rouge_score.rouge_scorer")
rouge.scoring = _stub("rouge_score.scoring")
_stub("requests")

import lm_eval  # noqa: E402
from lm_eval.api.metrics import exact_match_hf_evaluate  # noqa: E402
from lm_eval.filters.extraction import RegexFilter  # noqa: E402
from lm_eval.filters.selection import TakeFirstFilter  # noqa: E402

TASKS = Path(lm_eval.__file__).parent / "tasks" / "tinyBenchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, TASKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dump(name, obj):
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def hellaswag():
    docs = [
        {"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.", "ctx_b": "then", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "label": "3"},
        {"activity_label": "Home and Garden", "ctx_a": "[header] How to grow tomatoes [title] Choose a sunny spot.", "ctx_b": "PLANT the seeds [step] in spring.", "endings": ["[substeps] Water them  daily.", " Cut the [title] stems ", "Eat them.[step]", "Burn   them."], "label": "0"},
        {"activity_label": "Personal Care", "ctx_a": "", "ctx_b": "ÉCOUTER the  [title] music", "endings": ["a", "b [x] c", "  d  ", "[only]"], "label": 2},
        {"activity_label": "Cooking", "ctx_a": "A chef  slices onions.", "ctx_b": "", "endings": ["He cries.", "She [laughs] smiles.", "They leave . [title] Done", "It  ends  "], "label": "1"},
    ]
    processed = load("utils_hellaswag").process_docs(_Dataset(docs))
    dump("hellaswag_process_docs.json", {"docs": docs, "processed": processed})


def winogrande():
    docs = [
        {"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.", "option1": "Sarah", "option2": "Maria", "answer": "1"},
        {"sentence": "The trophy doesn't fit into the brown suitcase because the _ is too large.", "option1": "trophy", "option2": "suitcase", "answer": "1"},
        {"sentence": "I poured water from the bottle into the cup until the _ was full.", "option1": "bottle", "option2": "cup", "answer": "2"},
        {"sentence": "_ went home.", "option1": "He", "option2": "She", "answer": "2"},
        {"sentence": "Über den Fluss fuhr _ .", "option1": "Anna", "option2": "Jörg", "answer": "1"},
    ]
    u = load("utils_winogrande")
    out = [
        {"doc": d, "text": u.doc_to_text(d), "target": u.doc_to_target(d), "choices": u.doc_to_choice(d)}
        for d in docs
    ]
    dump("winogrande.json", {"cases": out})


def truthfulqa():
    u = load("utils_truthfulqa")
    rng = random.Random(7)
    cases = []
    for n_true, n_false, scale in [(1, 3, 3.0), (2, 2, 10.0), (3, 5, 40.0), (1, 1, 0.5), (4, 9, 200.0), (2, 6, 700.0)]:
        labels = [1] * n_true + [0] * n_false
        lls = [-abs(rng.gauss(0, scale)) for _ in labels]
        doc = {"question": "q", "mc2_targets": {"choices": [f"c{i}" for i in labels], "labels": labels}}
        res = u.process_results_mc2(doc, [(ll, False) for ll in lls])
        cases.append({"doc": doc, "loglikelihoods": lls, "acc": float(res["acc"])})
    dump("truthfulqa_mc2.json", {"cases": cases})


def gsm8k():
    # tinyGSM8k.yaml's filter_list and exact_match options, verbatim.
    filters = {
        "strict-match": [RegexFilter(regex_pattern="#### (\\-?[0-9\\.\\,]+)"), TakeFirstFilter()],
        "flexible-extract": [RegexFilter(group_select=-1, regex_pattern="(-?[$0-9.,]{2,})|(-?[0-9]+)"), TakeFirstFilter()],
    }
    em = dict(ignore_case=True, ignore_punctuation=False, regexes_to_ignore=[",", "\\$", "(?s).*#### ", "\\.$"])
    target = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    responses = [
        " She sold 72 clips.\n#### 72",
        " 48 + 24 = 72. The answer is 72.",
        " The answer is $1,234.56.",
        " #### -5",
        " no numbers here",
        " 3 apples and 7 pears, so 10",
        " #### 72.\n\nQuestion: next",
        " It costs $72.",
        " 7",
        " #### 1,000 and then #### 2",
        " -.5 or 72",
        "",
    ]
    cases = []
    for r in responses:
        case = {"response": r, "filtered": {}, "exact_match": {}}
        for name, steps in filters.items():
            resps = [[r]]
            for f in steps:
                resps = list(f.apply(resps, [{}]))
            out = resps[0]
            case["filtered"][name] = out
            case["exact_match"][name] = float(exact_match_hf_evaluate([out], [target], **em)["exact_match"])
        cases.append(case)
    dump("gsm8k_filters.json", {"target": target, "exact_match_options": em, "cases": cases})


def pkl_to_json(obj):
    """The conversion documented in evals/README.md (tinyBenchmarks.pkl → JSON)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {str(k): pkl_to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [pkl_to_json(v) for v in obj]
    return obj


def synthetic_bench(rng, scenarios, items, subs, dims):
    """A small IRT model of tinyBenchmarks.pkl's shape (the real one is not redistributable
    here and too large for a fixture)."""
    pos, subpos, seen, weights, lambdas = {}, {}, [], {}, {}
    start = 0
    for s in scenarios:
        idx = list(range(start, start + items))
        start += items
        pos[s] = idx
        cut = np.array_split(np.array(idx), subs)
        subpos[s] = {f"{s}_sub{i}": c.tolist() for i, c in enumerate(cut)}
        chosen = sorted(rng.choice(idx, size=100, replace=False).tolist())
        seen += chosen
        w = rng.random(100)
        weights[s] = np.round(w / w.sum(), 6)
        lambdas[s] = float(np.round(rng.random(), 6))
    n = start
    a = np.round(rng.normal(0.8, 0.5, size=(1, dims, n)), 6)
    b = np.round(rng.normal(0.0, 1.0, size=(1, dims, n)), 6)
    return {
        "seen_examples": seen,
        "examples_weights": weights,
        "irt_parameters": {"A": a, "B": b},
        "optimal_lambdas": lambdas,
        "scenarios_position": pos,
        "subscenarios_position": subpos,
    }


def gpirt():
    import tinyBenchmarks as tb

    rng = np.random.default_rng(11)
    params = {
        "lb": synthetic_bench(rng, ["truthfulqa", "gsm8k", "winogrande", "arc", "hellaswag"], 160, 3, 3),
        "mmlu": synthetic_bench(rng, ["mmlu"], 240, 4, 3),
    }
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            with open("tinyBenchmarks.pkl", "wb") as f:
                pickle.dump(params, f)
            for bench in ["arc", "gsm8k", "hellaswag", "mmlu", "truthfulqa", "winogrande"]:
                # Away from all-wrong / all-right, where θ has no finite optimum and
                # optimizers stop at different places.
                for kind in ["binary", "binary", "fraction"]:
                    if kind == "fraction" and bench != "truthfulqa":
                        continue
                    p = 0.2 + 0.6 * rng.random()
                    y = (rng.random(100) < p).astype(float) if kind == "binary" else np.round(rng.random(100), 6)
                    est = tb.evaluate(y, bench)[bench]
                    cases.append({"bench": bench, "y": y.tolist(), "irt": float(est["irt"]), "pirt": float(est["pirt"]), "gpirt": float(est["gpirt"])})
        finally:
            os.chdir(cwd)
    dump("tinyBenchmarks_synthetic.json", pkl_to_json(params))
    dump("gpirt.json", {"irt_file": "tinyBenchmarks_synthetic.json", "cases": cases})


if __name__ == "__main__":
    hellaswag()
    winogrande()
    truthfulqa()
    gsm8k()
    gpirt()
    print("wrote", sorted(p.name for p in OUT.iterdir()))
