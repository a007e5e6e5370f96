"""SemDeDup (Abbas et al. 2023, as ported in the COINCIDE code): drop semantic near-duplicates.

1. Embed every example: the proxy's last-layer state at its last real token, L2-normalised (proxy_embeddings
   `last`; `embedding: mean` takes the masked mean instead, which is what COINCIDE's script feeds it).
2. Spherical k-means into K clusters (seeded; 50 iterations as the COINCIDE script).
3. Inside each cluster, order rows farthest-from-centroid first (keep_hard, the original's default; false:
   nearest first) and give each row M = its maximum cosine to any EARLIER row of its cluster (−∞ for the first).
4. A row is a near-duplicate at ε if M > 1 − ε; keep the others.

Where this follows the original: steps 1–4, including that M is taken over all earlier rows of the cluster,
removed or not (the original's triu(sim).max over the sorted cluster), so the kept set at ε is {M ≤ 1 − ε}.
Where it departs, and why: the original hand-picks ε from a short list per dataset and ratio, then cuts the kept
rows to n in cluster-id order — the subset then depends on the list and on cluster numbering. Here ε is found by
search: since kept(ε) = {M ≤ 1 − ε} shrinks monotonically as ε grows, the largest ε keeping at least n rows is
1 − (the n-th smallest M), found by one sort of M computed once (equivalent to bisection over ε, exactly).
Tie rule for exactly n: rows with equal M (exact duplicates; the first rows of clusters, all −∞) are ordered by
a permutation drawn with the run's seed, so a tie at the threshold is broken at random but reproducibly.
If n is below the number of clusters, ε reaches its maximum and a seeded random choice of cluster heads is kept.

K: COINCIDE's script uses 10,000 clusters for LLaVA-665k (665,298 rows); `clusters: null` scales that to the
pool, round(10,000 × N / 665,298) (at least 1, ~66.5 rows per cluster), so a small pool is not cut into
singleton clusters where nothing can be a duplicate.
"""

import numpy as np

from selectbench.selection.base import Selection
from selectbench.selection.checks import flag
from selectbench.selection.embedding_clusters import EmbeddingClusterMethod, spherical_kmeans

PAPER_POOL, PAPER_CLUSTERS = 665_298, 10_000  # LLaVA-665k and COINCIDE's --ncentroids for it
BLOCK = 4096  # rows per block of a cluster's similarity matrix (block × cluster size floats at a time)


def scaled_clusters(pool_size: int) -> int:
    return max(1, round(PAPER_CLUSTERS * pool_size / PAPER_POOL))


def max_cosine_to_earlier(x: np.ndarray, labels: np.ndarray, centroid_cosine: np.ndarray,
                          keep_hard: bool = True) -> np.ndarray:
    """M per row: its maximum cosine to an earlier row of its cluster, rows ordered farthest-from-centroid first
    (keep_hard) or nearest first; −∞ for each cluster's first row. Ties in the order go by row index."""
    key = centroid_cosine if keep_hard else -centroid_cosine
    order = np.lexsort((np.arange(len(x)), key, labels))  # by cluster, then by key ascending
    m = np.full(len(x), -np.inf, dtype=np.float64)
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for rows in np.split(order, bounds):
        e = x[rows]
        for start in range(1, len(rows), BLOCK):
            # row i of the block sees rows [0, i) of the cluster
            sim = e[start:start + BLOCK] @ e[:start + BLOCK].T
            sim[np.arange(sim.shape[0])[:, None] + start <= np.arange(sim.shape[1])[None, :]] = -np.inf
            m[rows[start:start + BLOCK]] = sim.max(1)
    return m


def keep_exactly(m: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, float]:
    """The n rows kept at the largest ε that keeps at least n (rows with the n smallest M; ties by a seeded
    permutation), and the threshold 1 − ε = M of the last row kept (−∞: only cluster heads are kept)."""
    tie = np.random.default_rng(seed).permutation(len(m))
    order = np.lexsort((tie, m))
    return np.sort(order[:n]), float(m[order[n - 1]])


class SemDeDup(EmbeddingClusterMethod):
    name = "semdedup"
    parameters = {
        "embedding": "last",      # proxy_embeddings array: last (last real token) | mean (masked mean)
        "clusters": None,         # K; None: 10,000 × N / 665,298 (COINCIDE's K for LLaVA-665k, scaled)
        "keep_hard": True,        # order clusters farthest-from-centroid first (original default)
        "kmeans_iterations": 50,  # COINCIDE's --niter
        "seed": None,             # k-means seed; None: the run's seed (COINCIDE fixes 1234)
        "checkpoint": -1,         # which proxy checkpoint embeds (-1: the end of its fine-tune)
        "device": "auto",         # k-means device: auto (cuda if present) | cpu | cuda
    }

    @classmethod
    def check(cls, params):
        super().check(params)
        flag(params, "keep_hard")

    def select(self, ctx, scores, n, seed):
        p = ctx.params
        x = scores["embedding"]
        k = p["clusters"] or scaled_clusters(len(x))
        k_seed = seed if p["seed"] is None else p["seed"]
        clusters = spherical_kmeans(x, k, k_seed, p["kmeans_iterations"], device=p["device"])
        m = max_cosine_to_earlier(x, clusters.labels, clusters.cosine, p["keep_hard"])
        rows, threshold = keep_exactly(m, n, seed)
        return Selection(rows, {
            "epsilon": 1 - threshold if np.isfinite(threshold) else None, "clusters": int(k),
            "nonempty_clusters": int(len(np.unique(clusters.labels))),
            "kmeans_seed": int(k_seed), "embedding": p["embedding"], "keep_hard": p["keep_hard"],
            "duplicates_at_epsilon": int((m > threshold).sum()),
            "tied_at_threshold": int((m == threshold).sum())})
