"""COINCIDE (Lee et al., EMNLP 2024): cluster examples by what the proxy's attention writes (o_proj outputs
pooled over image and text, several layers), give each cluster a share of the budget that grows with its
transferability (how similar its text half is to the other clusters') and shrinks with its density, and take
MMD prototypes inside each cluster.

1. features: the shared `coincide_features` of the proxy's last checkpoint (selectbench/features/coincide.py).
2. spherical k-means (FAISS, seeded), K = `clusters` (default round(N / 66.5), at least 2: the release's 10,000
   for LLaVA-665k; it used 2,500 for Vision-Flan's 191k, N / 76).
3. transferability = mean cosine of a centroid's text half to the other centroids' (those above
   `transfer_threshold` ignored); density = mean Gaussian kernel over all pairs of the cluster, diagonal included.
4. shares = softmax(transferability / density / τ); clusters in decreasing share take their renormalised share
   of what is left (selectbench/selection/coincide.py: allocate), topped up to exactly n.
5. inside a cluster, greedy MMD² prototypes with the same kernel.
"""

import time

import numpy as np
from threadpoolctl import threadpool_limits

from selectbench.features.sharding import load_npz
from selectbench.selection.base import Method, Selection
from selectbench.selection.checks import flag, integer, is_integer, number, one_of
from selectbench.selection.clustering import kmeans
from selectbench.selection.coincide import allocate, greedy_mmd, kernel_column_sums, transferability

EXAMPLES_PER_CLUSTER = 66.5  # the release: 10,000 clusters for 665k examples
PROJECTION_SEED = 0


class Coincide(Method):
    name = "coincide"
    requires = ("coincide_features",)
    parameters = {
        "clusters": None,            # K; None: round(N / 66.5), at least 2
        "temperature": 0.1,          # τ of the budget softmax
        "sigma": 1.0,                # Gaussian kernel width (density and MMD)
        "transfer_threshold": 0.9,   # centroids closer than this (cosine) do not count towards transferability
        "layers": [3, 7, 11, 15, 19],
        "checkpoint": -1,            # which proxy checkpoint the features come from
        "projection": None,          # None: full width; an even int: seeded Gaussian projection of each half
        "seed": None,                # k-means seed; None: the run's seed (the release: 1234)
        "kmeans_iterations": 50,     # the release's
        "kmeans_backend": "auto",    # faiss (spherical, as the release) | sklearn (normalised rows) | auto
        "kmeans_gpu": False,         # FAISS on the GPU (a faiss-gpu build): faster, other numbers than the CPU's
    }

    @classmethod
    def check(cls, params):
        number(params, "temperature", strict=True)
        number(params, "sigma", strict=True)
        number(params, "transfer_threshold", low=-1, high=1)  # a cosine
        integer(params, "clusters", low=2, optional=True)
        integer(params, "projection", low=2, optional=True)
        if params["projection"] is not None and params["projection"] % 2:
            raise ValueError(f"projection must be even (half for the image part, half for the text), got "
                             f"{params['projection']}")
        layers = params["layers"]
        if (not isinstance(layers, list) or not layers or any(not is_integer(i) or i < 0 for i in layers)
                or len(set(layers)) != len(layers)):
            raise ValueError(f"layers must be a non-empty list of distinct non-negative layer indices (in the "
                             f"config a list is a grid: write [[3, 7, 11]]), got {layers!r}")
        integer(params, "kmeans_iterations")
        flag(params, "kmeans_gpu")
        one_of(params, "kmeans_backend", ("auto", "faiss", "sklearn"))

    @classmethod
    def feature_spec(cls, feature, params):
        p = {**cls.parameters, **params}
        return {"checkpoint": p["checkpoint"], "layers": list(p["layers"])}

    def score(self, ctx):
        z = load_npz(ctx.artifacts["coincide_features"])
        if not z["covered"].all():
            raise ValueError(f"{ctx.artifacts['coincide_features']}: features do not cover the whole pool")
        x = z["coincide"][:, 0].astype(np.float32)
        n, width = x.shape
        L = len(z.get("meta_layers", [0]))
        # the release lays out [image, text] per layer; regroup as [image of every layer | text of every layer]
        # so the text half is one slice (distances and cosines do not depend on the column order)
        x = x.reshape(n, L, 2, width // (2 * L)).transpose(0, 2, 1, 3).reshape(n, width)
        dim = ctx.params["projection"]
        if dim is not None:
            x = np.concatenate([project(h, dim // 2, PROJECTION_SEED + i) for i, h in enumerate(np.split(x, 2, 1))], 1)
        return {"features": x, "text_only": ~ctx.has_image()}

    def select(self, ctx, scores, n, seed):
        p = ctx.params
        x = scores["features"]
        k = p["clusters"] or max(2, round(ctx.size / EXAMPLES_PER_CLUSTER))
        k_seed = seed if p["seed"] is None else int(p["seed"])
        start = time.perf_counter()
        raw = kmeans(x, k, k_seed, p["kmeans_iterations"], backend=p["kmeans_backend"], spherical=True,
                     gpu=p["kmeans_gpu"])
        kmeans_seconds = time.perf_counter() - start
        ids, labels, sizes = np.unique(raw, return_inverse=True, return_counts=True)  # non-empty clusters only
        members = np.split(np.argsort(labels, kind="stable"), np.cumsum(sizes)[:-1])  # each in row order
        text = x[:, x.shape[1] // 2:]
        transfer = transferability(np.stack([text[m].mean(0) for m in members]), p["transfer_threshold"])
        # ~N/66 kernels of ~66 rows each: a threaded BLAS only adds overhead there (15× slower on 2 busy cores)
        with threadpool_limits(1):
            columns = [kernel_column_sums(x[m], p["sigma"]) for m in members]
            density = np.array([c.sum() / len(c) ** 2 for c in columns])
            taken, order, topped = allocate(transfer / density, sizes, n, p["temperature"])
            rows = [m if t == len(m) else m[greedy_mmd(x[m], t, p["sigma"], c)]
                    for m, t, c in zip(members, taken, columns) if t]
        return Selection(np.concatenate(rows) if rows else np.zeros(0, np.int64), {
            "clusters": len(ids), "clusters_requested": int(k), "kmeans_seed": k_seed,
            "kmeans_backend": backend_version(p["kmeans_backend"]), "kmeans_gpu": bool(p["kmeans_gpu"]),
            "topped_up": topped, "width": int(x.shape[1]), "kmeans_seconds": round(kmeans_seconds, 2),
            "taken_per_cluster": {str(c): [int(sizes[c]), int(taken[c])] for c in order if taken[c]},
            "transferability": [float(transfer.min()), float(transfer.max())],
            "density": [float(density.min()), float(density.max())]})


def project(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Seeded Gaussian random projection to dim columns, scaled by 1/√dim so squared distances are kept in
    expectation (Johnson–Lindenstrauss): the kernel's σ keeps its meaning."""
    g = np.random.default_rng(seed).standard_normal((x.shape[1], dim), dtype=np.float32) / np.sqrt(dim)
    return x @ g


def backend_version(backend: str) -> str:
    """Which k-means ran, with its version: the release's subsets depend on the FAISS version."""
    try:
        import faiss
        if backend in ("auto", "faiss"):
            return f"faiss {faiss.__version__}"
    except ImportError:
        if backend == "faiss":
            raise
    import sklearn
    return f"sklearn {sklearn.__version__}"
