"""XMAS clustering + balanced selection at LLaVA-665k scale on synthetic trajectories.

Usage: python benchmarks/xmas_selection.py [--n 665000] [--clusters 1000] [--checkpoints 8] [--ratio 0.1]
Prints wall time per phase and the process's peak resident memory (ru_maxrss, which sees FAISS's allocations).
The spec's target on a 2-core laptop: ≤ 60 s and ≤ 2 GB for n = 665,000 and K = 1000.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from selectbench.selection.balanced import balanced_sample
from selectbench.selection.base import subset_size
from selectbench.selection.clustering import kmeans
from selectbench.selection.trajectory import instability, trajectory_matrix


def synthetic_trajectories(n: int, checkpoints: int, seed: int = 0) -> np.ndarray:
    """(n, T, 1, 5) top-5 singular values: 50 latent groups of very different sizes, each with its own level
    and drift over checkpoints, plus per-example noise."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(50, size=n, p=np.geomspace(1, 0.01, 50) / np.geomspace(1, 0.01, 50).sum())
    level, drift = rng.uniform(1, 10, 50)[groups], rng.normal(0, 0.5, 50)[groups]
    t = np.arange(checkpoints, dtype=np.float32)
    s = (level[:, None] + drift[:, None] * t + rng.normal(0, 0.3, (n, checkpoints))).astype(np.float32)
    return (s[:, :, None, None] * np.array([0.4, 0.25, 0.15, 0.12, 0.08], np.float32)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=665_000)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--checkpoints", type=int, default=8)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--text-only", type=float, default=0.06, help="fraction of text-only examples")
    args = ap.parse_args()
    sv = synthetic_trajectories(args.n, args.checkpoints)
    n_text = int(args.text_only * args.n)
    timings = {}
    t0 = time.perf_counter()
    traj = trajectory_matrix(sv, np.zeros(sv.shape[:2], np.float32), np.arange(args.checkpoints), "sum")
    features, unstable = traj.reshape(len(traj), -1), instability(traj)
    timings["features_s"] = time.perf_counter() - t0
    image_rows = np.arange(n_text, args.n)
    t0 = time.perf_counter()
    labels = np.full(args.n, -1, np.int64)
    labels[image_rows] = kmeans(features[image_rows], args.clusters, seed=0, niter=100)
    timings["kmeans_s"] = time.perf_counter() - t0
    labels[:n_text] = labels.max() + 1
    t0 = time.perf_counter()
    budget = subset_size(args.ratio, args.n)
    sample = balanced_sample(labels, unstable, budget, seed=0, random_clusters=frozenset({int(labels.max())}))
    timings["sampling_s"] = time.perf_counter() - t0
    assert len(np.unique(sample.rows)) == budget
    timings["total_s"] = sum(timings.values())
    result = {"n": args.n, "clusters": args.clusters, "checkpoints": args.checkpoints, "selected": budget,
              **{k: round(v, 2) for k, v in timings.items()},
              "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
