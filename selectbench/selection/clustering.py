"""Seeded k-means: FAISS when installed (as the XMAS release), scikit-learn otherwise."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def kmeans(x: np.ndarray, k: int, seed: int, niter: int = 100, backend: str = "auto", n_init: int = 1,
           spherical: bool = False, gpu: bool = False) -> np.ndarray:
    """Cluster label per row of x (n, d), Euclidean; k is capped at the number of distinct rows. n_init > 1 keeps
    the best of several seeded starts (the XMAS release uses one).

    spherical: FAISS's spherical k-means (centroids re-normalised every iteration, rows assigned by inner product,
    rows themselves not normalised: COINCIDE's release). scikit-learn has none, so there it clusters the
    L2-normalised rows with Euclidean k-means, an approximation. gpu: FAISS on every GPU it sees (a FAISS GPU
    build; otherwise ignored)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    k = int(min(k, len(np.unique(x, axis=0)) if len(x) <= 100_000 else k, len(x)))
    if k <= 1:
        return np.zeros(len(x), dtype=np.int64)
    if backend == "auto":
        try:
            import faiss  # noqa: F401
            backend = "faiss"
        except ImportError:
            backend = "sklearn"
    if backend == "faiss":
        import faiss

        use_gpu = gpu and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=int(seed), nredo=n_init, verbose=False,
                          spherical=spherical, gpu=use_gpu)
        km.train(x)
        _, labels = km.index.search(x, 1)
        return labels[:, 0].astype(np.int64)
    if backend == "sklearn":
        from sklearn.cluster import KMeans

        if spherical:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        km = KMeans(n_clusters=k, n_init=n_init, max_iter=niter, random_state=int(seed))
        return km.fit_predict(x).astype(np.int64)
    raise ValueError(f"backend must be auto, faiss or sklearn, got {backend!r}")
