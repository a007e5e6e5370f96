"""Cluster-balanced sampling (XMAS's, shared by any method that samples across clusters).

Clusters with fewer than `min_size` members are dropped. Clusters are visited from the smallest to the
largest; each takes quota = remaining budget // clusters left (all of itself if smaller), so unused quota flows
on to larger clusters. Inside a cluster, members are taken in `priority` order (lowest first; ties by row) or,
for clusters flagged random, uniformly at random with the seed.

If dropping small clusters leaves fewer examples than the budget, the rest is filled from the dropped
clusters' members in priority order, so that a subset always has exactly n distinct rows (the release would
return fewer); `filled` reports how many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BalancedSample:
    rows: np.ndarray
    per_cluster: dict[int, int]   # cluster id → examples taken
    dropped: list[int]            # clusters below the minimum size
    filled: int                   # examples taken from dropped clusters to reach n


def balanced_sample(labels: np.ndarray, priority: np.ndarray, n: int, seed: int, min_size: int = 3,
                    random_clusters: frozenset[int] = frozenset(), order: str = "stable") -> BalancedSample:
    """labels: cluster id per row; priority: lower is taken first ('stable' order); order='random' takes
    every cluster's members in seeded random order instead."""
    labels = np.asarray(labels)
    if n > len(labels):
        raise ValueError(f"budget {n} exceeds the {len(labels)} examples")
    if order not in ("stable", "random"):
        raise ValueError(f"order must be stable or random, got {order!r}")
    rng = np.random.default_rng(seed)
    ids, sizes = np.unique(labels, return_counts=True)
    kept = [(int(s), int(c)) for c, s in zip(ids, sizes) if s >= min_size]
    dropped = [int(c) for c, s in zip(ids, sizes) if s < min_size]
    kept.sort()  # smallest first; ties by cluster id
    members = {c: _ordered(np.flatnonzero(labels == c), priority, rng, order == "random" or c in random_clusters)
               for _, c in kept}
    taken, per_cluster, remaining = [], {}, n
    for left, (_, c) in zip(range(len(kept), 0, -1), kept):
        quota = remaining // left
        chosen = members[c][:quota]
        taken.append(chosen)
        per_cluster[c] = len(chosen)
        remaining -= len(chosen)
    filled = 0
    if remaining > 0:
        spare = np.flatnonzero(np.isin(labels, dropped))
        chosen = _ordered(spare, priority, rng, order == "random")[:remaining]
        taken.append(chosen)
        filled = len(chosen)
        remaining -= filled
    rows = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
    assert remaining == 0 and len(np.unique(rows)) == n, "balanced sampling lost examples"
    return BalancedSample(rows.astype(np.int64), per_cluster, dropped, filled)


def _ordered(rows: np.ndarray, priority: np.ndarray, rng: np.random.Generator, random: bool) -> np.ndarray:
    if random:
        return rng.permutation(rows)
    return rows[np.lexsort((rows, priority[rows]))]
