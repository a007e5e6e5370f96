"""COINCIDE's selection steps (Lee et al., EMNLP 2024), on features whose second half is the text part:
cluster transferability, cluster density, the budget split across clusters and greedy MMD prototypes.

The kernel is the release's Gaussian exp(−‖x−y‖²/2σ²) in float64; squared distances come from the norms
expansion as in the release. No step draws random numbers.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

BLOCK = 2048  # rows per kernel block: a cluster's kernel is never held whole


def rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-d2 / (2.0 * sigma ** 2))


def _blocks(n: int) -> Iterator[slice]:
    return (slice(i, min(i + BLOCK, n)) for i in range(0, n, BLOCK))


def kernel_column_sums(x: np.ndarray, sigma: float) -> np.ndarray:
    """Σ_i K(x_i, x_j) for every j, block by block; their mean over j is the cluster's density."""
    return sum(rbf(x[s], x, sigma).sum(0) for s in _blocks(len(x)))


def transferability(text_centroids: np.ndarray, threshold: float) -> np.ndarray:
    """Per centroid: mean cosine of its text half to the other centroids' text halves, ignoring those with
    cosine > threshold (the centroid itself, at 1, among them); 0 when every other centroid is that close (the
    release divides by zero there)."""
    norms = np.linalg.norm(text_centroids, axis=1, keepdims=True)
    unit = text_centroids / np.where(norms > 0, norms, 1.0)
    out = np.zeros(len(unit))
    for s in _blocks(len(unit)):
        cos = unit[s] @ unit.T
        keep = cos <= threshold
        count = keep.sum(1)
        out[s] = np.where(count > 0, (cos * keep).sum(1) / np.maximum(count, 1), 0.0)
    return out


def softmax(score: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(score / τ) shifted by its maximum: the release's plain exp overflows once score / τ > 709."""
    z = np.asarray(score, dtype=np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def allocate(score: np.ndarray, sizes: np.ndarray, n: int, temperature: float) -> tuple[np.ndarray, np.ndarray, int]:
    """How many examples each cluster gives: (taken per cluster, visiting order, topped-up count).

    The release's rule: clusters in decreasing softmax(score / τ); each takes round(remaining × its share
    renormalised over the clusters not yet visited) (Python's round: half to even), all of itself if smaller.
    The release stops there and can fall short of n; here what is left then goes to the clusters in the same
    order, each adding members up to its size, until exactly n are taken."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if not 0 <= n <= sizes.sum():
        raise ValueError(f"budget {n} outside [0, {sizes.sum()}]")
    shares = softmax(score, temperature)
    order = np.argsort(-shares, kind="stable")  # ties by cluster index
    taken = np.zeros(len(sizes), dtype=np.int64)
    remaining = n
    for i, c in enumerate(order):
        share = softmax(score[order[i:]], temperature)[0]
        taken[c] = min(round(remaining * share), sizes[c])
        remaining -= taken[c]
    topped = remaining
    for c in order:
        extra = min(remaining, sizes[c] - taken[c])
        taken[c] += extra
        remaining -= extra
    return taken, order, int(topped)


def greedy_mmd(x: np.ndarray, m: int, sigma: float, col: np.ndarray | None = None) -> np.ndarray:
    """Local indices of m prototypes of x, each step adding the member that minimises MMD²(x, chosen) with the
    Gaussian kernel (first minimum on ties, as the release's argmin over candidates in index order).

    MMD²(X, S∪{c}) = mean K_XX + (Σ_SS + 2 Σ_s K(s,c) + K(c,c)) / (m+1)² − 2 (Σ_{x,s} K + Σ_x K(x,c)) / (n (m+1)),
    so each step needs one kernel row, not the release's re-evaluation of every candidate set. col: the kernel's
    column sums when the caller has them (kernel_column_sums)."""
    n = len(x)
    m = min(m, n)
    col = kernel_column_sums(x, sigma) if col is None else col
    diag = np.ones(n)  # K(c, c) = exp(0)
    to_chosen = np.zeros(n)          # Σ_{s∈S} K(s, c)
    within, cross = 0.0, 0.0         # Σ_{s,t∈S} K(s, t);  Σ_{x, s∈S} K(x, s)
    chosen: list[int] = []
    free = np.ones(n, dtype=bool)
    for k in range(m):
        mmd = (within + 2 * to_chosen + diag) / (k + 1) ** 2 - 2 * (cross + col) / (n * (k + 1))
        best = int(np.argmin(np.where(free, mmd, np.inf)))
        row = rbf(x[best:best + 1], x, sigma)[0]
        within += 2 * to_chosen[best] + diag[best]
        cross += col[best]
        to_chosen += row
        free[best] = False
        chosen.append(best)
    return np.array(chosen, dtype=np.int64)
