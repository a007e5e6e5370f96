"""Self-Sup prototypes (Sorscher et al. 2022, "Beyond neural scaling laws"): k-means in a self-supervised
embedding space; an example's difficulty is its cosine distance to its prototype (nearest centroid); keep the
hardest (farthest) by default, band low | middle | high as the ranking methods.

Embedding: the comparison papers (COINCIDE, XMAS) do not say which one they clustered. Sorscher et al. used a
self-supervised image model (SwAV) whose embedding summarises the whole input; the closest the proxy offers is
the masked mean of its last-layer states over every real token, image tokens included (proxy_embeddings
`mean`), so that is the default. The last-token state (`embedding: last`) mostly encodes what comes next,
not what the example is about.

K: Sorscher et al. cluster ImageNet (1.28M images) with k = 100 and report the metric robust to k; the default
follows them. The prototype of a row is the centroid k-means assigned it to (the nearest at the last
assignment, recomputed as the normalised mean of its cluster). Ties in the score go by row index (band_indices).
"""

from selectbench.selection.base import Selection, band_indices, check_band
from selectbench.selection.embedding_clusters import EmbeddingClusterMethod, spherical_kmeans


class SelfSup(EmbeddingClusterMethod):
    name = "self_sup"
    parameters = {
        "embedding": "mean",      # proxy_embeddings array: mean (masked mean) | last (last real token)
        "clusters": 100,          # K (Sorscher et al.'s ImageNet setting)
        "band": "high",           # high: farthest from the prototype (hard), the paper's choice for large data
        "kmeans_iterations": 50,
        "seed": None,             # k-means seed; None: the run's seed
        "checkpoint": -1,         # which proxy checkpoint embeds (-1: the end of its fine-tune)
        "device": "auto",         # k-means device: auto (cuda if present) | cpu | cuda
    }

    @classmethod
    def check(cls, params):
        super().check(params)
        check_band(params)
        if params["clusters"] is None:
            raise ValueError("clusters must be a positive integer, got None")

    def select(self, ctx, scores, n, seed):
        p = ctx.params
        k_seed = seed if p["seed"] is None else p["seed"]
        clusters = spherical_kmeans(scores["embedding"], p["clusters"], k_seed, p["kmeans_iterations"],
                                    device=p["device"])
        distance = 1.0 - clusters.cosine
        return Selection(band_indices(distance, n, p["band"]), {
            "band": p["band"], "clusters": int(len(clusters.centroids)), "kmeans_seed": int(k_seed),
            "embedding": p["embedding"], "statistic": "cosine distance to the nearest prototype"})
