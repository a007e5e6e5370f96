"""Greedy selection over a k-nearest-neighbour graph: kNN search; D2-Pruning's (Maharana et al. 2023) forward pass
that spreads importance to a node from its neighbours and greedy selection whose reverse pass lowers the neighbours
of every node it takes; Self-Filter's (Chen et al. 2024) greedy with its similarity penalty.

A missing neighbour is -1 in `neighbors` (a pool of k rows or fewer, an approximate index that returns fewer than
k) and is never read as a score.
"""

from __future__ import annotations

import heapq

import numpy as np

INDEXES = ("exact", "approximate")
# approximate index: FAISS HNSW (inner product = cosine on unit rows). Measured on synthetic 2048-d rows
# (docs/methods.md, D2-Pruning): 96.5% of the exact 5 neighbours at 20,000 rows, 58% at 100,000 around 10,000
# directions, where it was no faster than brute force on 2 cores
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 16, 40, 32
_CHUNK_BYTES = 256 * 2**20  # similarity block of one query chunk in the exact search


def knn(x: np.ndarray, k: int, index: str = "exact", threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of every row of x (n, d): neighbours (n, k) int64, nearest first (ties by row),
    -1 where missing, and their squared L2 distances (n, k) float64. A row never lists itself (with more than k
    exact duplicates of a row, its own index may be crowded out; then the farthest candidate is dropped instead)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    kk = min(k + 1, n)
    if index == "exact":
        ids, dist = _exact(x, kk, threads)
    elif index == "approximate":
        ids, dist = _hnsw(x, kk, threads)
    else:
        raise ValueError(f"index must be one of {list(INDEXES)}, got {index!r}")
    own = ids == np.arange(n)[:, None]
    own[~own.any(axis=1), kk - 1] = True  # self crowded out: drop the last candidate
    ids = ids[~own].reshape(n, kk - 1)
    dist = dist[~own].reshape(n, kk - 1)
    if kk - 1 < k:  # fewer than k other rows
        ids = np.pad(ids, ((0, 0), (0, k - kk + 1)), constant_values=-1)
        dist = np.pad(dist, ((0, 0), (0, k - kk + 1)), constant_values=np.inf)
    dist[ids < 0] = np.inf
    return ids.astype(np.int64), dist

def graph_of(x: np.ndarray, k: int, index: str, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """kNN graph (knn) over the rows with a finite embedding; a row without one (not covered by the pass) is isolated:
    no neighbours, and no one's neighbour."""
    finite = np.flatnonzero(np.isfinite(x).all(axis=1))
    neighbors = np.full((len(x), k), -1, np.int64)
    distances = np.full((len(x), k), np.inf)
    ids, dist = knn(x[finite], k, index, threads)
    neighbors[finite] = np.where(ids >= 0, finite[np.maximum(ids, 0)], -1)
    distances[finite] = dist
    return neighbors, distances


def _exact(x: np.ndarray, kk: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: blocks of x @ xᵀ (BLAS; FAISS's GPU brute force when FAISS sees a GPU), squared L2 from the
    norms, the kk smallest per row, sorted by (float64 distance, row)."""
    gpu = _faiss_gpu()
    if gpu is not None:
        import faiss

        _, ids = faiss.knn_gpu(gpu, x, x, kk)
        return _order(ids.astype(np.int64), _pair_distances(x, ids.astype(np.int64)))
    norms = np.einsum("ij,ij->i", x, x)
    chunk = max(1, _CHUNK_BYTES // (4 * max(len(x), 1)))
    ids = np.empty((len(x), kk), np.int64)
    for start in range(0, len(x), chunk):
        q = slice(start, start + chunk)
        d2 = x[q] @ x.T
        d2 *= -2
        d2 += norms[q, None]
        d2 += norms[None, :]
        ids[q] = np.argpartition(d2, kk - 1, axis=1)[:, :kk] if kk < len(x) else np.arange(len(x))
    return _order(ids, _pair_distances(x, ids))


def _order(ids: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's candidates sorted by distance, ties by row index (deterministic whatever the search's order)."""
    by_id = np.argsort(ids, axis=1, kind="stable")
    order = np.take_along_axis(by_id, np.argsort(np.take_along_axis(dist, by_id, 1), axis=1, kind="stable"), 1)
    return np.take_along_axis(ids, order, 1), np.take_along_axis(dist, order, 1)


def _faiss_gpu():
    try:
        import faiss
    except ImportError:
        return None
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return None
    return faiss.StandardGpuResources()


def _hnsw(x: np.ndarray, kk: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS HNSW on inner products (cosine for unit rows); squared L2 recomputed exactly for what it returns."""
    import faiss

    faiss.omp_set_num_threads(max(1, threads))
    index = faiss.IndexHNSWFlat(x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.add(x)
    index.hnsw.efSearch = max(HNSW_EF_SEARCH, kk)
    _, ids = index.search(x, kk)
    ids = ids.astype(np.int64)
    safe = np.where(ids < 0, 0, ids)
    dist = _pair_distances(x, safe)
    dist[ids < 0] = np.inf
    return _order(ids, dist)


def _pair_distances(x: np.ndarray, ids: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Squared L2 from each row to the rows ids lists, in float64 (the search ranks in float32; the messages use
    these)."""
    out = np.empty(ids.shape, np.float64)
    for start in range(0, len(x), chunk):
        q = slice(start, start + chunk)
        diff = x[q, None, :].astype(np.float64) - x[ids[q]]
        out[q] = np.einsum("ijk,ijk->ij", diff, diff)
    return np.maximum(out, 0)


def forward_scores(importance: np.ndarray, neighbors: np.ndarray, distances: np.ndarray, gamma: float,
                   floor: float = 1e-7) -> np.ndarray:
    """Forward message passing: s_i = max(e_i, floor) + Σ_{j ∈ kNN(i)} exp(−γ d_ij) · max(e_j, floor), e the
    importance. Importance is floored at 1e-7 as in the D2-Pruning code COINCIDE runs (a margin can be negative)."""
    e = np.maximum(np.asarray(importance, np.float64), floor)
    present = neighbors >= 0
    messages = np.where(present, np.exp(-gamma * np.where(present, distances, 0)) * e[np.where(present, neighbors, 0)],
                        0.0)
    return e + messages.sum(axis=1)


def greedy_reverse(scores: np.ndarray, neighbors: np.ndarray, distances: np.ndarray, gamma: float,
                   n: int) -> np.ndarray:
    """n rows, greedily: take the highest current score (ties by row), then lower each of its neighbours j by
    exp(−γ d_ij) · s_i (reverse message passing), repeat. Exact greedy by a max-heap with lazy entries: every
    change pushes the new score, and an entry whose score is no longer current (or whose row is taken) is
    skipped, so a score that rises (a negative s_i) is handled too."""
    current = np.asarray(scores, np.float64).copy()
    taken = np.zeros(len(current), bool)
    heap = [(-s, r) for r, s in enumerate(current.tolist())]
    heapq.heapify(heap)
    decay = np.exp(-gamma * np.where(neighbors >= 0, distances, 0))
    out: list[int] = []
    while len(out) < n and heap:
        neg, row = heapq.heappop(heap)
        if taken[row] or -neg != current[row]:
            continue
        taken[row] = True
        out.append(row)
        for j, w in zip(neighbors[row].tolist(), decay[row].tolist()):
            if j >= 0 and not taken[j]:
                current[j] -= w * current[row]
                heapq.heappush(heap, (-current[j], j))
    return np.array(out, dtype=np.int64)


def penalised_greedy(difficulty: np.ndarray, neighbors: np.ndarray, similarity: np.ndarray, n: int,
                     k_nearest: int, gamma: float) -> tuple[np.ndarray, int]:
    """Self-Filter's stage 2: n picks of the highest current difficulty (ties by row), each lowering (or, for a
    negative difficulty, raising) its k_nearest untaken candidates j by γ · d_i · cos_ij². Returns the rows in pick
    order and how many picks found fewer than k_nearest untaken candidates. Python scalars in the loop: numpy's
    per-element indexing would make it several times slower at 665k rows."""
    values = np.asarray(difficulty, np.float64).copy()
    values[np.isnan(values)] = -np.inf  # unscored rows come last
    d = values.tolist()
    taken = bytearray(len(d))
    version = [0] * len(d)
    heap = [(-value, row, 0) for row, value in enumerate(d)]
    heapq.heapify(heap)
    picks, short = [], 0
    while len(picks) < n:
        _, i, v = heapq.heappop(heap)
        if taken[i] or v != version[i]:
            continue
        taken[i] = 1
        picks.append(i)
        hit = 0
        for j, cos in zip(neighbors[i].tolist(), similarity[i].tolist()):
            if hit == k_nearest:
                break
            if j < 0 or taken[j]:
                continue
            d[j] -= gamma * d[i] * cos * cos
            version[j] += 1
            heapq.heappush(heap, (-d[j], j, version[j]))
            hit += 1
        short += hit < k_nearest
    return np.array(picks, np.int64), int(short)
