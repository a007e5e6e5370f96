"""Spherical k-means on L2-normalised example embeddings, shared by the embedding baselines (SemDeDup,
Self-Sup prototypes): the proxy_embeddings feature read as an (n, d) matrix, and a seeded Lloyd iteration in
torch that runs on the GPU when there is one.

Why not selection.clustering.kmeans: that is Euclidean, and the FAISS build in the suite's environment has no
GPU path, while at LLaVA-665k scale (665k × 2048, K = 10,000) one Lloyd iteration is ~27 TFLOP — minutes per
iteration on CPU cores, seconds on a GPU. A plain torch loop also keeps results from depending on the FAISS
version (a pitfall of the reference code). On CPU the result is a deterministic function of the seed; on CUDA
the centroid sums use atomic adds, so the last bits (and rarely an assignment) may differ between runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from selectbench.features.sharding import load_npz
from selectbench.selection.base import Method
from selectbench.selection.checks import checkpoint_index, integer, one_of

if TYPE_CHECKING:  # torch is imported where used: the Snakefile discovers methods/ at planning time
    import torch

EMBEDDINGS = ("last", "mean")  # arrays of the proxy_embeddings feature
CHUNK = 8192  # rows per elementwise block (64 MB at d = 2048): never an (n, d) temporary beside the embeddings


def load_embeddings(path: Path, key: str) -> np.ndarray:
    """(n, d) float32 rows of one proxy_embeddings array (its one checkpoint slot), re-normalised."""
    if key not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {key!r}")
    x = load_npz(path, [key])[key][:, 0].astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Clusters:
    labels: np.ndarray      # (n,) cluster per row, 0..k-1
    centroids: np.ndarray   # (k, d) unit-norm mean of each cluster's rows
    cosine: np.ndarray      # (n,) cosine of each row to its own centroid


def _device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _assign(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid by cosine (rows and centroids are unit vectors), in row chunks so the (rows, k) score
    block stays ~256 MB whatever n and k are."""
    import torch

    chunk = max(1, (1 << 26) // max(1, len(c)))
    labels, best = [], []
    for start in range(0, len(x), chunk):
        value, index = (x[start:start + chunk] @ c.T).max(1)
        labels.append(index)
        best.append(value)
    return torch.cat(labels), torch.cat(best)


def _centroids(x: torch.Tensor, labels: torch.Tensor, k: int, fallback: torch.Tensor) -> torch.Tensor:
    import torch

    sums = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    norms = sums.norm(dim=1, keepdim=True)
    # an empty cluster keeps its previous centroid rather than becoming a zero vector
    return torch.where(norms > 0, sums / norms.clamp(min=1e-12), fallback)


def spherical_kmeans(x: np.ndarray, k: int, seed: int, niter: int = 50, device: str = "auto") -> Clusters:
    """Lloyd's algorithm on the unit sphere: assign each row to the centroid of highest cosine, then set each
    centroid to the normalised mean of its rows. Initial centroids: k distinct rows drawn with the seed (as FAISS).
    k is capped at n. The returned labels are the last assignment and the centroids are recomputed from them, so
    each row's centroid is the normalised mean of exactly its cluster."""
    import torch

    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = int(min(k, n))
    if k < 1:
        raise ValueError(f"k-means needs at least one row and one cluster, got n={n}, k={k}")
    dev = _device(device)
    xt = torch.from_numpy(x).to(dev)
    init = np.random.default_rng(seed).choice(n, size=k, replace=False)
    c = xt[torch.from_numpy(np.sort(init)).to(dev)].clone()
    labels = None
    for _ in range(niter):
        new, _ = _assign(xt, c)
        if labels is not None and torch.equal(new, labels):
            break  # converged: the centroids would not move
        labels = new
        c = _centroids(xt, labels, k, c)
    if labels is None:
        labels, _ = _assign(xt, c)
    c = _centroids(xt, labels, k, c)
    cosine = torch.cat([(xt[s:s + CHUNK] * c[labels[s:s + CHUNK]]).sum(1) for s in range(0, n, CHUNK)])
    return Clusters(labels.cpu().numpy().astype(np.int64), c.cpu().numpy(), cosine.cpu().numpy())


class EmbeddingClusterMethod(Method):
    """Base of the methods that cluster the proxy's embeddings (SemDeDup, Self-Sup): the proxy_embeddings feature at
    the configured checkpoint, the array they score, and the checks of the parameters they share (embedding,
    clusters, kmeans_iterations, seed, checkpoint, device)."""

    requires = ("proxy_embeddings",)

    @classmethod
    def check(cls, params):
        one_of(params, "embedding", EMBEDDINGS)
        integer(params, "clusters", optional=True)
        integer(params, "kmeans_iterations")
        integer(params, "seed", low=0, optional=True)
        checkpoint_index(params)
        one_of(params, "device", ("auto", "cpu", "cuda"))

    @classmethod
    def feature_spec(cls, feature, params):
        return {"checkpoint": params.get("checkpoint", -1)}

    def score(self, ctx):
        return {"embedding": load_embeddings(ctx.artifacts["proxy_embeddings"], ctx.params["embedding"])}
