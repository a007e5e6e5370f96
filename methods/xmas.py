"""XMAS (arXiv 2510.01454): cluster examples by how their cross-modal attention evolves while a small proxy is
fine-tuned, then sample a balanced subset across clusters, stable examples first.

variant 'released' reproduces the authors' code (q/k projections with heads merged, no RoPE, no causal mask,
layers summed, rows from one token after the image block as the release's slice, sum of the top-5 singular
values per checkpoint, k-means over all rows with text-only ones as zero trajectories); 'paper' follows the
paper's text (per-head causal attention with RoPE, heads averaged, every text row after the image, each top-k
singular value kept, k-means over the image rows). Any knob set explicitly overrides
the variant's choice. Trajectories come from the shared `attention_trajectories` feature, extracted once per
spec and reused by every ratio, seed and selection-only knob (clusters, order, min size, checkpoints, feature).
"""

import numpy as np

from selectbench.features.sharding import load_npz
from selectbench.selection.balanced import balanced_sample
from selectbench.selection.base import Method, Selection
from selectbench.selection.checks import integer, one_of
from selectbench.selection.clustering import kmeans
from selectbench.selection.trajectory import choose_checkpoints, instability, trajectory_matrix

VARIANTS = {
    "released": {"attention": "released", "combine": "sum", "feature": "sum", "skip_after_image": 1,
                 "kmeans_rows": "all"},
    "paper": {"attention": "paper", "combine": "sum", "feature": "per_sigma", "skip_after_image": 0,
              "kmeans_rows": "image"},
}


class XMAS(Method):
    name = "xmas"
    requires = ("attention_trajectories",)
    parameters = {
        "variant": "released",
        "attention": None,        # released | paper (None: the variant's)
        "combine": None,          # over layers: sum | concat
        "feature": None,          # sum | per_sigma | loss
        "k": 5,                   # top singular values
        "layers": "all",          # or a list of layer indices
        "skip_after_image": None,  # text tokens after the image block that are not rows: 1 (release) | 0
        "svd": "exact",           # exact | randomized
        "checkpoints": "all",     # all | count T (evenly spaced) | list of indices
        "clusters": 1000,         # K
        "order": "stable",        # within a cluster: stable (lowest instability first) | random
        "min_cluster_size": 3,    # clusters with fewer members are dropped (release: ≤ 2)
        "seed": None,             # k-means seed; None: the run's seed
        "kmeans_iterations": 100,
        "kmeans_restarts": 1,     # best of this many seeded starts (release: 1)
        "kmeans_rows": None,      # all (release: text-only rows as zero trajectories) | image (image rows only)
        "kmeans_backend": "auto",  # faiss (release; random init) | sklearn (k-means++ init) | auto: faiss if present
    }

    @classmethod
    def check(cls, params):
        cls.resolved(params)
        choices = {"attention": (None, "released", "paper"), "combine": (None, "sum", "concat"),
                   "feature": (None, "sum", "per_sigma", "loss"), "svd": ("exact", "randomized"),
                   "order": ("stable", "random"), "kmeans_backend": ("auto", "faiss", "sklearn"),
                   "skip_after_image": (None, 0, 1), "kmeans_rows": (None, "all", "image")}
        for key, allowed in choices.items():
            one_of(params, key, allowed)
        for key in ("k", "clusters", "min_cluster_size", "kmeans_iterations", "kmeans_restarts"):
            integer(params, key)

    @staticmethod
    def resolved(params):
        if params["variant"] not in VARIANTS:
            raise ValueError(f"xmas: variant must be one of {sorted(VARIANTS)}, got {params['variant']!r}")
        preset = VARIANTS[params["variant"]]
        return {key: preset[key] if params.get(key) is None else params[key] for key in preset}

    @classmethod
    def feature_spec(cls, feature, params):
        r = cls.resolved({**cls.parameters, **params})
        return {"attention": r["attention"], "combine": r["combine"], "k": params.get("k", 5),
                "layers": params.get("layers", "all"), "svd": params.get("svd", "exact"),
                "skip_after_image": r["skip_after_image"]}

    def score(self, ctx):
        r = self.resolved(ctx.params)
        z = load_npz(ctx.artifacts["attention_trajectories"], ["sv", "loss", "covered"])
        sv, loss, covered = z["sv"], z["loss"], z["covered"]
        text_only = ~ctx.has_image()
        if (covered != ~text_only).any():
            raise ValueError(f"{ctx.artifacts['attention_trajectories']}: trajectories do not cover exactly the "
                             f"image examples of the pool")
        which = choose_checkpoints(sv.shape[1], ctx.params["checkpoints"])
        traj = trajectory_matrix(sv, loss, which, r["feature"])
        return {"features": traj.reshape(len(traj), -1), "instability": instability(traj), "text_only": text_only}

    def select(self, ctx, scores, n, seed):
        p = ctx.params
        text_only = scores["text_only"].astype(bool)
        image_rows = np.flatnonzero(~text_only)
        k_seed = seed if p["seed"] is None else int(p["seed"])
        kmeans_rows = self.resolved(p)["kmeans_rows"]
        clustered = np.arange(ctx.size) if kmeans_rows == "all" else image_rows
        labels = np.full(ctx.size, -1, dtype=np.int64)
        labels[clustered] = kmeans(np.nan_to_num(scores["features"][clustered], nan=0.0), p["clusters"], k_seed,
                                   p["kmeans_iterations"], backend=p["kmeans_backend"], n_init=p["kmeans_restarts"])
        text_cluster = int(labels.max()) + 1  # text-only examples then move to a cluster of their own
        labels[text_only] = text_cluster
        priority = np.nan_to_num(scores["instability"], nan=0.0)
        sample = balanced_sample(labels, priority, n, seed, p["min_cluster_size"],
                                 random_clusters=frozenset({text_cluster}), order=p["order"])
        sizes = np.bincount(labels)
        return Selection(sample.rows, {
            "clusters": int(len(np.unique(labels[image_rows]))), "text_only_cluster": text_cluster,
            "dropped_clusters": len(sample.dropped), "filled_from_dropped": sample.filled,
            "taken_per_cluster": {str(c): [int(sizes[c]), t] for c, t in sample.per_cluster.items()},
            "kmeans_seed": k_seed, "kmeans_rows": kmeans_rows,
            "padding": "excluded from rows and softmax (the release lets it in)"})
