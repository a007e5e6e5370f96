"""Self-Filter (Chen et al., ACL Findings 2024; RayRuiboChen/Self-Filter), CLIP-feature setting:

  stage 1     train the target on the whole pool jointly with a score net s_i = w · f_i over CLIP features
              f_i = [unit image embedding, unit text embedding], each example's loss weighted by |B| · softmax(s)
              over its batch (selectbench.training.self_filter; the artifact self_filter_scorer)
  difficulty  d_i = −s_i (the net learns to give hard, high-loss examples low weight)
  stage 2     repeat n times: take i = argmax d over rows not taken (ties by row); then for the k_nearest rows
              not taken that are most cosine-similar to f_i: d_j ← d_j − γ · d_i · cos(f_i, f_j)²

Defaults as the release: γ = 1, k_nearest = 10. Stage 1 is a full-data training of the target (the same recipe as
the full-data reference, plus the score net), so Self-Filter costs more than training on everything; the cost
table counts it.
Departures, and why:
  * the k_nearest rows are found among each row's `candidates` nearest neighbours (exact kNN on the unit features,
    computed once in score()), not by sorting all N similarities at every pick (N · n: weeks on a CPU at
    LLaVA-665k); a pick whose candidates are all taken penalises fewer than k_nearest rows, counted in the
    sidecar as `short_picks`;
  * the greedy runs on a heap with lazy updates instead of re-sorting the whole pool per pick (the same picks);
  * the release's "scores" setting (ImageReward, CLIP score and GPT-3.5 ratings as the net's input) needs a paid
    API and is not offered.
Selection is deterministic: no randomness, ties by row.
"""

import numpy as np

from selectbench.features.sharding import load_npz
from selectbench.selection.base import Method, Selection
from selectbench.selection.checks import integer, number, one_of
from selectbench.selection.graph import INDEXES, graph_of, penalised_greedy


class SelfFilter(Method):
    name = "self_filter"
    requires = ("clip_embeddings", "self_filter_scorer")
    parameters = {"gamma": 1.0, "k_nearest": 10, "candidates": 50, "index": "exact"}

    @classmethod
    def check(cls, params):
        integer(params, "k_nearest")
        integer(params, "candidates", low=params["k_nearest"])
        number(params, "gamma")
        one_of(params, "index", INDEXES)

    def score(self, ctx):
        from selectbench.training.self_filter import read_score_net

        # float32 throughout: 665k × 1,536 is 4 GB, twice that in float64
        f = load_npz(ctx.artifacts["clip_embeddings"], ["embedding"])["embedding"][:, 0].astype(np.float32, copy=False)
        w = read_score_net(ctx.artifacts["self_filter_scorer"]).astype(np.float32)
        if w.shape != (f.shape[1],):
            raise ValueError(f"{ctx.artifacts['self_filter_scorer']}: score net of width {w.shape}, features "
                             f"{f.shape[1]}")
        unit = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        neighbors, distances = graph_of(unit, ctx.params["candidates"], ctx.params["index"], ctx.threads)
        return {"difficulty": -(f @ w).astype(np.float64), "neighbors": neighbors,
                "similarity": np.where(neighbors >= 0, 1.0 - distances / 2.0, 0.0)}  # ‖a − b‖² = 2 − 2 cos

    def select(self, ctx, scores, n, seed):
        rows, short = penalised_greedy(scores["difficulty"], scores["neighbors"], scores["similarity"], n,
                                       ctx.params["k_nearest"], ctx.params["gamma"])
        return Selection(rows, {"gamma": ctx.params["gamma"], "k_nearest": ctx.params["k_nearest"],
                                "candidates": ctx.params["candidates"], "short_picks": short})

