"""Selection-step cost of the embedding baselines at LLaVA-665k scale on synthetic L2-normalised features.

Usage: python benchmarks/selection_cost.py [--n 665298] [--dim 2048] [--methods semdedup,self_sup]
           [--params '{"semdedup": {"clusters": 10000}}'] [--json out.json]

Features: --dim wide (2048 = StableLM-2-1.6B's hidden size, the proxy's width), rows drawn around --groups
random directions plus --dup-fraction planted near-copies, made in chunks so the process's peak resident memory
before selection is the features themselves. Each method runs in a fresh subprocess (peak memory per method),
through its own Method.select as the select step calls it; reported: wall time, the process's peak resident
memory (ru_maxrss, which sees torch's and numpy's allocations), and that peak minus the resident memory once the
features were made (what selection adds), plus torch.cuda.max_memory_allocated on a GPU.

An entry "semdedup_planted" times SemDeDup's steps 3-4 alone (within-cluster max cosine, ε search) with the
planted groups as its clusters: at paper K the k-means needs a GPU (~27 TFLOP per Lloyd iteration), and this
measures the rest at full size on any machine. To add a method, add it to SETUPS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS_DIR = str(ROOT / "methods")

# default parameters per entry: the K each one is measured at (SemDeDup: COINCIDE's 10,000 for LLaVA-665k,
# which its default scales to; Self-Sup: its default, Sorscher et al.'s 100)
SETUPS: dict[str, dict] = {
    "semdedup": {"clusters": 10_000},
    "self_sup": {"clusters": 100},
    "semdedup_planted": {},
    # COINCIDE: the release's K for LLaVA-665k; its rows are [image half | text half] of the features
    "coincide": {"clusters": 10_000},
    # D2-Pruning: kNN graph + forward pass (its score step) and the greedy (its select step), timed apart;
    # --params '{"d2_pruning": {"index": "approximate"}}' for HNSW, whose recall is measured on 1,000 rows
    "d2_pruning": {},
    # Self-Filter's select step (the penalised greedy) on a synthetic candidate graph: its score step's kNN over the
    # CLIP features is D2-Pruning's kNN (the same helper), timed there
    "self_filter": {},
}
SCORE_KEY = {"coincide": "features"}  # the score array each method's select reads (default: "embedding")


def synthetic(n: int, dim: int, groups: int, dup_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) unit rows: each around one of `groups` random directions (cosine to it ~0.7), the last
    dup_fraction of rows near-copies (cosine ~0.999) of random earlier rows; and each row's group."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_dup = int(dup_fraction * n)
    group = rng.integers(0, groups, n - n_dup)
    source = rng.integers(0, n - n_dup, n_dup)
    group = np.concatenate([group, group[source]])
    x = np.empty((n, dim), np.float32)
    chunk = 8192  # small: the temporaries stay far below the features, so the peak before selection is theirs
    for start in range(0, n, chunk):  # originals first: every copy's source exists before the copies are made
        stop = min(n, start + chunk)
        rows = np.arange(start, stop)
        original = rows < n - n_dup
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
        block = centres[group[rows]] + noise
        copies = rows[~original]
        if len(copies):
            block[~original] = x[source[copies - (n - n_dup)]] + 0.05 * noise[~original]
        x[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x, group


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_one(name: str, args: argparse.Namespace, overrides: dict) -> dict:
    import torch

    from selectbench.selection.base import Context, subset_size
    from selectbench.selection.registry import discover, expand

    x, group = synthetic(args.n, args.dim, args.groups, args.dup_fraction)
    n_keep = subset_size(args.ratio, args.n)
    if name == "semdedup_planted":
        ns = discover(METHODS_DIR)["semdedup"].select.__globals__
        centroids = np.zeros((args.groups, args.dim), np.float32)
        np.add.at(centroids, group, x)
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        cosine = np.concatenate([np.einsum("ij,ij->i", x[s:s + 65_536], centroids[group[s:s + 65_536]])
                                 for s in range(0, args.n, 65_536)])
    base = rss_now()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if name == "semdedup_planted":  # only steps 3-4
        m = ns["max_cosine_to_earlier"](x, group, cosine)
        rows, threshold = ns["keep_exactly"](m, n_keep, 0)
        details = {"epsilon": 1 - threshold, "clusters": args.groups}
    elif name == "d2_pruning":
        rows, details = run_d2(x, n_keep, overrides)
    elif name == "self_filter":
        rows, details = run_self_filter(len(x), n_keep, overrides)
    else:
        cls = discover(METHODS_DIR)[name]
        params = expand({name: {**SETUPS[name], **overrides}}, {name: cls})[0].param_dict
        ctx = Context("synthetic", [{}] * args.n, Path("."), {}, params, threads=os.cpu_count() or 1)
        selection = cls().select(ctx, {SCORE_KEY.get(name, "embedding"): x}, n_keep, 0)
        rows, details = selection.rows, selection.details
    seconds = time.perf_counter() - t0
    assert len(np.unique(rows)) == n_keep
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"method": name, "n": args.n, "dim": args.dim, "selected": n_keep, "seconds": round(seconds, 2),
           "peak_rss_gb": round(peak / 1e9, 2), "features_gb": round(x.nbytes / 1e9, 2),
           "selection_extra_gb": round(max(0, peak - base) / 1e9, 2),
           "peak_before_selection_gb": round(before / 1e9, 2),
           "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
           "details": {k: v for k, v in details.items() if k != "taken_per_cluster"}}
    if torch.cuda.is_available():
        out["gpu_peak_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return out


def run_d2(x: np.ndarray, n_keep: int, overrides: dict) -> tuple[np.ndarray, dict]:
    """D2-Pruning's score step (kNN graph, forward pass) on x with uniform random margins, then its select step;
    for the approximate index, the share of the exact 5 nearest neighbours it found for 1,000 rows."""
    from selectbench.selection.base import Context
    from selectbench.selection.registry import discover, expand

    cls = discover(METHODS_DIR)["d2_pruning"]
    params = expand({"d2_pruning": {**SETUPS["d2_pruning"], **overrides}}, {"d2_pruning": cls})[0].param_dict
    margin = np.random.default_rng(1).uniform(-1, 1, len(x))
    t0 = time.perf_counter()
    scores = cls.graph_scores(margin, x, params, threads=os.cpu_count() or 1)
    score_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows = cls().select(Context("synthetic", [{}] * len(x), Path("."), {}, params), scores, n_keep, 0).rows
    details = {"index": params["index"], "score_s": round(score_s, 2),
               "select_s": round(time.perf_counter() - t0, 2)}
    if params["index"] != "exact":
        probe = np.random.default_rng(2).choice(len(x), min(1000, len(x)), replace=False)
        found = 0
        for part in np.array_split(probe, 10):
            sims = x[part] @ x.T
            sims[np.arange(len(part)), part] = -np.inf
            exact = np.argpartition(-sims, params["k"], axis=1)[:, :params["k"]]
            found += sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), scores["neighbors"][part].tolist()))
        details["recall_at_k"] = round(found / (len(probe) * params["k"]), 4)
    return rows, details


def run_self_filter(n: int, n_keep: int, overrides: dict) -> tuple[np.ndarray, dict]:
    """Self-Filter's select step: normal difficulties, each row's `candidates` neighbours drawn at random with
    cosines in [0.5, 1) (what the greedy costs does not depend on where the neighbours are)."""
    from selectbench.selection.base import Context
    from selectbench.selection.registry import discover, expand

    cls = discover(METHODS_DIR)["self_filter"]
    params = expand({"self_filter": {**SETUPS["self_filter"], **overrides}}, {"self_filter": cls})[0].param_dict
    rng = np.random.default_rng(1)
    k = params["candidates"]
    scores = {"difficulty": rng.normal(size=n), "neighbors": rng.integers(0, n, (n, k)),
              "similarity": np.sort(rng.uniform(0.5, 1.0, (n, k)), axis=1)[:, ::-1]}
    selection = cls().select(Context("synthetic", [{}] * n, Path("."), {}, params), scores, n_keep, 0)
    return selection.rows, {"candidates": k, "k_nearest": params["k_nearest"],
                            "short_picks": selection.details["short_picks"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=665_298)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--groups", type=int, default=10_000, help="planted directions")
    ap.add_argument("--dup-fraction", type=float, default=0.05)
    ap.add_argument("--ratio", type=float, default=0.2)
    ap.add_argument("--methods", default="semdedup,self_sup")
    ap.add_argument("--params", default="{}", help="JSON {method: {param: value}} over SETUPS")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args()
    overrides = json.loads(args.params)
    if args.one:
        print(json.dumps(run_one(args.one, args, overrides.get(args.one, {}))))
        return
    results = []
    for name in args.methods.split(","):
        if name not in SETUPS:
            raise SystemExit(f"unknown entry {name!r}; known: {sorted(SETUPS)}")
        cmd = [sys.executable, __file__, "--one", name, "--n", str(args.n), "--dim", str(args.dim),
               "--groups", str(args.groups), "--dup-fraction", str(args.dup_fraction), "--ratio", str(args.ratio),
               "--params", args.params]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            results.append({"method": name, "error": done.stderr[-2000:]})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
