"""Time and memory of the report job on a paper-sized grid: the aggregation, every row's and cell's 95% bootstrap
interval and the paired comparisons, as `snakemake` runs it (`python -m selectbench.cli report`).

Usage: python benchmarks/aggregate_grid.py [--models 50] [--bootstrap 1000] [--keep DIR] [--json FILE]

The grid is synthetic but has the paper configuration's shape: lmms-eval task names and protocols, item counts of
the real evaluation sets (≈ 250k items per model, VQAv2 val most of them), POPE with its F1 indicators, 8 methods
× 3 ratios × 2 seeds + full data (2 seeds) = 50 models. Writing the fixture is not timed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selectbench.evaluation.specs import TASKS  # noqa: E402

# items per model in the paper configuration's lmms-eval tasks (lmms-eval 0.7.3 splits)
ITEMS = {"pope": 9000, "textvqa_val": 5000, "vqav2_val": 214354, "gqa": 12578, "mmbench_en_dev": 4329,
         "mmbench_cn_dev": 4329, "mmvet": 218}
METHODS = ["random", "xmas", "perplexity", "el2n", "clip_score", "gradient", "semdedup", "coincide"]


def models(n: int) -> list[tuple[str, float, int]]:
    grid = [("full", 1.0, s) for s in (0, 1)]
    grid += [(m, r, s) for m in METHODS for r in (0.1, 0.2, 0.3) for s in (0, 1)]
    return grid[:n]


def write_fixture(root: Path, n_models: int) -> tuple[list[Path], list[Path]]:
    rng = np.random.default_rng(0)
    truth = {b: rng.random(n) for b, n in ITEMS.items()}  # per-item difficulty shared by every model
    gold = rng.random(ITEMS["pope"]) < 0.5
    rows_files, item_files = [], []
    for method, ratio, seed in models(n_models):
        skill = 0.55 if method == "full" else 0.5 + 0.05 * rng.random()
        rows, items = [], []
        key = {"dataset": "llava665k", "method": method, "ratio": ratio, "seed": seed}
        for bench, n in ITEMS.items():
            spec = TASKS[bench]
            label = f"lmms-eval 0.7.3: {spec.protocol}"
            ids = np.char.add("q", np.arange(n).astype(str))
            if bench == "pope":
                right = rng.random(n) < 0.85
                pred = np.where(right, gold, ~gold).astype(float)
                both = (pred * gold).sum()
                value = 200 * both / (pred.sum() + gold.sum())
                items += [pd.DataFrame({**key, "benchmark": bench, "item": ids, "metric": m, "value": v})
                          for m, v in (("predicted_yes", pred), ("label_yes", gold.astype(float)))]
            else:
                scores = 100.0 * (rng.random(n) < truth[bench] * 0.4 + skill * 0.6)
                value = scores.mean()
                items.append(pd.DataFrame({**key, "benchmark": bench, "item": ids, "metric": spec.primary,
                                           "value": scores}))
            rows.append({**key, "benchmark": bench, "metric": spec.primary, "value": round(float(value), 4),
                         "protocol": label})
            rows.append({**key, "benchmark": bench, "metric": "samples", "value": n, "protocol": label})
        stem = root / "llava665k" / "eval" / method / f"r{ratio:g}_s{seed}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(stem.with_suffix(".csv"), index=False)
        pd.concat(items)[["dataset", "method", "ratio", "seed", "benchmark", "item", "metric", "value"]].to_csv(
            stem.with_suffix(".items.csv"), index=False)
        rows_files.append(stem.with_suffix(".csv"))
        item_files.append(stem.with_suffix(".items.csv"))
    return rows_files, item_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=50)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--keep", type=Path, help="write the fixture and outputs here instead of a temporary folder")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        t0 = time.perf_counter()
        rows, items = write_fixture(root, args.models)
        written = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "selectbench.cli", "report", "--dataset", "llava665k", "--reference", "full",
               "--inputs", *map(str, rows), "--items", *map(str, items), "--benchmarks", *ITEMS,
               "--tables", str(root / "tables"), "--plots", str(root / "plots"), "--chance-margin", "10",
               "--bootstrap", str(args.bootstrap)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        n_items = sum(len(pd.read_csv(f, usecols=["item"])) for f in items[:1])
        result = {"models": len(rows), "tasks": len(ITEMS), "item_rows_per_model": n_items,
                  "bootstrap": args.bootstrap, "report_wall_s": round(wall, 1), "report_peak_rss_mib": round(peak_mib),
                  "fixture_write_s": round(written, 1)}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
