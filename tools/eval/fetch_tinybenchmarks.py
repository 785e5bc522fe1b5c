"""Download the tinyBenchmarks sets lamarck's evals/tinybenchmarks/*.yaml read, as JSONL.

    pip install datasets
    python tools/eval/fetch_tinybenchmarks.py [--out evals/tinybenchmarks]

Writes <out>/tinyBenchmarks/<dataset>/<config>/<split>.jsonl, the folder layout the task
files' dataset_path + dataset_name point at. Needs internet access to the Hugging Face Hub.
"""
import argparse
import json
import os

from datasets import load_dataset

SETS = [("tinyBenchmarks/tinyAI2_arc", "ARC-Challenge"), ("tinyBenchmarks/tinyMMLU", "all"),
        ("tinyBenchmarks/tinyGSM8k", "main")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "evals", "tinybenchmarks"))
    args = ap.parse_args()
    for path, name in SETS:
        ds = load_dataset(path, name)
        for split, rows in ds.items():
            folder = os.path.join(args.out, path, name)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{split}.jsonl"), "w") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            print(path, name, split, len(rows))


if __name__ == "__main__":
    main()
