"""D2-Pruning (Maharana et al. 2023), as COINCIDE's code runs it on LVLM instruction data:

  importance e_i  = the proxy's AUM-style margin: mean over answer tokens of p(target) − max p(other)
                    (proxy_token_stats `margin`; an example without answer tokens counts 0, as the release's
                    NaN → 0)
  embedding x_i   = masked mean of the proxy's last-layer hidden states, L2-normalised (proxy_embeddings `mean`;
                    `last`: the state at the last real token)
  graph           = each row's k nearest other rows, d_ij = ‖x_i − x_j‖² (= 2 − 2 cos on unit rows)
  forward pass    s_i = max(e_i, 1e-7) + Σ_{j ∈ kNN(i)} exp(−γ_f d_ij) · max(e_j, 1e-7)
  selection       repeat n times: take i = argmax s over rows not taken (ties by row), then for j ∈ kNN(i):
                  s_j ← s_j − exp(−γ_r d_ij) · s_i  (reverse message passing)

Defaults as COINCIDE's scripts: k = 5, γ_f = 1.0, γ_r = 0.4. Departures from that code, and why:
  * exact kNN (brute force) instead of FAISS IVF-PQ with nprobe 1: the release's neighbours are whatever one
    coarse cell of 16-byte PQ codes holds, so its graph depends on the quantiser's training and FAISS's version;
    brute force is n² · d (hours at LLaVA-665k on a few CPU cores, minutes or less on a GPU); `index:
    approximate` (FAISS HNSW) exists, but on CPUs it was no faster than brute force at 100,000 rows and
    lost 40% of the true neighbours (docs/methods.md);
  * the exact greedy of the paper, by a heap with lazy updates. The release walks the fixed descending order of
    the forward scores, parking a row on a standby list when it has fallen below the next one: the same picks,
    except that a row whose score rose (a taken row with a negative score raises its neighbours) is not seen
    before the walk reaches it, ties go to the higher row, and the walk reads one row past its end;
  * a missing neighbour (fewer than k rows, or an approximate index returning fewer) sends and receives nothing;
    the release reads id −1 as the last row's score;
  * distances are not shifted by the row's distance to itself (the release subtracts it to undo PQ's error;
    exact search gives 0);
  * the embedding is a masked mean (the release's mean includes padding, so it depends on the batch).
Selection is deterministic: no randomness, ties by row.
"""

import numpy as np

from selectbench.features.sharding import load_npz
from selectbench.selection.base import Method, Selection
from selectbench.selection.checks import integer, number, one_of
from selectbench.selection.graph import INDEXES, forward_scores, graph_of, greedy_reverse

EMBEDDINGS = ("mean", "last")


class D2Pruning(Method):
    name = "d2_pruning"
    requires = ("proxy_token_stats", "proxy_embeddings")
    parameters = {"k": 5, "gamma_forward": 1.0, "gamma_reverse": 0.4, "embedding": "mean", "index": "exact"}

    @classmethod
    def check(cls, params):
        integer(params, "k")
        number(params, "gamma_forward")
        number(params, "gamma_reverse")
        one_of(params, "embedding", EMBEDDINGS)
        one_of(params, "index", INDEXES)

    def score(self, ctx):
        p = ctx.params
        margin = load_npz(ctx.artifacts["proxy_token_stats"], ["margin"])["margin"][:, 0]
        x = load_npz(ctx.artifacts["proxy_embeddings"], [p["embedding"]])[p["embedding"]][:, 0]
        return self.graph_scores(margin, x, p, ctx.threads)

    @staticmethod
    def graph_scores(margin: np.ndarray, x: np.ndarray, params: dict, threads: int = 1) -> dict[str, np.ndarray]:
        """The kNN graph of x (n, d) and the forward scores from the margins (n,); what select() reads."""
        margin = np.asarray(margin, np.float64)
        importance = np.nan_to_num(margin, nan=0.0)
        neighbors, distances = graph_of(x, params["k"], params["index"], threads)
        graph = forward_scores(importance, neighbors, distances, params["gamma_forward"])
        return {"importance": importance, "unscored": np.isnan(margin), "graph_score": graph,
                "neighbors": neighbors, "distances": distances}

    def select(self, ctx, scores, n, seed):
        rows = greedy_reverse(scores["graph_score"], scores["neighbors"], scores["distances"],
                              ctx.params["gamma_reverse"], n)
        return Selection(rows, {"k": ctx.params["k"], "index": ctx.params["index"],
                                "embedding": ctx.params["embedding"],
                                "unscored": int(scores["unscored"].sum()),
                                "isolated": int((scores["neighbors"] < 0).all(axis=1).sum())})

