"""Selecting with the gradient baseline's validation target at LLaVA-665k scale: LESS's max over tasks vs the
balanced aggregate (tasks take turns), on synthetic per-task scores.

Usage: python benchmarks/gradient_aggregate.py [--n 665298] [--tasks 7] [--ratio 0.5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from selectbench.selection.base import band_indices, subset_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=665298)
    parser.add_argument("--tasks", type=int, default=7)
    parser.add_argument("--ratio", type=float, default=0.5)
    a = parser.parse_args()
    spec = importlib.util.spec_from_file_location("gradient", Path(__file__).parents[1] / "methods" / "gradient.py")
    gradient = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gradient)
    rng = np.random.default_rng(0)
    scores = [rng.normal(size=a.n) for _ in range(a.tasks)]
    n = subset_size(a.ratio, a.n)
    start = time.perf_counter()
    band_indices(np.max(np.stack(scores, axis=1), axis=1), n, "high")
    by_max = time.perf_counter() - start
    start = time.perf_counter()
    rows = gradient.balanced_by_task(scores, n)
    balanced = time.perf_counter() - start
    assert len(np.unique(rows)) == n
    print(json.dumps({"pool": a.n, "tasks": a.tasks, "subset": n, "max_s": round(by_max, 2),
                      "balanced_s": round(balanced, 2)}))


if __name__ == "__main__":
    main()
