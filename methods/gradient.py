"""Gradient-based selection, LESS-style (Xia et al. 2024): per-example LoRA gradients of the warmed-up proxy,
Adam-preconditioned and randomly projected (selectbench.features.gradients). Targets:
  none → GraNd: rank by the norm of the example's gradient;
  self → mean cosine of the example's (normalised, projected) gradient to those of its own k-means cluster.
Keeps the high band by default."""

import numpy as np

from selectbench.selection.base import Method, Selection, band_indices, check_band
from selectbench.selection.clustering import kmeans


class Gradient(Method):
    name = "gradient"
    requires = ("lora_gradients",)
    parameters = {"target": "none", "band": "high", "dim": 1024, "precondition": "adam", "projection_seed": 0,
                  "clusters": 20}

    @classmethod
    def check(cls, params):
        if params["target"] not in ("none", "self"):
            raise ValueError(f"target must be none or self, got {params['target']!r}")
        check_band(params)

    @classmethod
    def feature_spec(cls, feature, params):
        return {"dim": params["dim"], "precondition": params["precondition"], "seed": params["projection_seed"]}

    def score(self, ctx):
        with np.load(ctx.artifacts["lora_gradients"]) as z:
            projected, norm = z["projected"][:, 0], z["grad_norm"][:, 0]
        if ctx.params["target"] == "none":
            return {"score": norm.astype(np.float64)}
        unit = projected / np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        labels = kmeans(unit, ctx.params["clusters"], seed=0)
        score = np.empty(len(unit))
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            score[members] = unit[members] @ unit[members].mean(axis=0)
        return {"score": score, "cluster": labels}

    def select(self, ctx, scores, n, seed):
        return Selection(band_indices(scores["score"], n, ctx.params["band"]),
                         {"band": ctx.params["band"], "target": ctx.params["target"],
                          "statistic": "gradient norm (GraNd)" if ctx.params["target"] == "none"
                          else "mean cosine to own cluster"})
