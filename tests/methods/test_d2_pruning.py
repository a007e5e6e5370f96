"""d2_pruning: kNN graph, forward and reverse message passing against hand computations, spread over planted
clusters, exact size and determinism, plan-time checks, and score + select on the tiny pool with the real
proxy_token_stats and proxy_embeddings features of the tiny proxy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from selectbench.selection.base import Context
from selectbench.selection.graph import forward_scores, greedy_reverse, knn
from selectbench.selection.registry import MethodError, discover, expand
from tests.features.conftest import proxy_run  # noqa: F401  (fixture: a tiny random-weight proxy on disk)
from tests.methods.conftest import one_shard_feature, select_twice

METHODS = str(Path(__file__).resolve().parents[2] / "methods")
INF = np.inf


@pytest.fixture
def d2():
    return discover(METHODS)["d2_pruning"]


def _params(cls, **overrides):
    return expand({"d2_pruning": overrides}, {"d2_pruning": cls})[0].param_dict


def test_forward_scores_by_hand():
    """s_i = max(e_i, 1e-7) + Σ_j exp(−γ d_ij) max(e_j, 1e-7); a negative or missing importance counts 1e-7, a
    missing neighbour (−1) sends nothing."""
    e = np.array([0.5, -0.2, 0.3, 0.0])
    neighbors = np.array([[1, 2], [0, -1], [0, 1], [2, 0]])
    distances = np.array([[0.1, 0.4], [0.1, INF], [0.4, 0.5], [0.2, 0.3]])
    f = 1e-7
    want = [0.5 + math.exp(-0.1) * f + math.exp(-0.4) * 0.3,
            f + math.exp(-0.1) * 0.5,
            0.3 + math.exp(-0.4) * 0.5 + math.exp(-0.5) * f,
            f + math.exp(-0.2) * 0.3 + math.exp(-0.3) * 0.5]
    np.testing.assert_allclose(forward_scores(e, neighbors, distances, 1.0), want, rtol=1e-12)
    # γ_f scales the distance inside the kernel
    assert forward_scores(e, neighbors, distances, 2.0)[1] == pytest.approx(f + math.exp(-0.2) * 0.5)


def test_reverse_message_passing_lowers_a_chosen_points_neighbours():
    """Row 0 (score 10) is taken first; its neighbour row 1 drops from 9 to 9 − exp(−0.4 · 1) · 10 = 2.2968, below
    row 2 (2.30, not a neighbour: unchanged) and above row 3 (2.29). Without the reverse pass row 1 comes second."""
    scores = np.array([10.0, 9.0, 2.30, 2.29])
    neighbors = np.array([[1, -1], [0, -1], [3, -1], [2, -1]])
    distances = np.array([[1.0, INF], [1.0, INF], [1.0, INF], [1.0, INF]])
    assert 9 - math.exp(-0.4) * 10 == pytest.approx(2.2968, abs=1e-4)
    assert greedy_reverse(scores, neighbors, distances, 0.4, 4).tolist() == [0, 2, 1, 3]
    # a far neighbour is barely lowered (exp(−0.4 · 50) · 10 ≈ 2e-8): the plain ranking
    far = np.where(np.isfinite(distances), 50.0, INF)
    assert greedy_reverse(scores, neighbors, far, 0.4, 4).tolist() == [0, 1, 2, 3]


def test_greedy_follows_current_scores_ties_by_row_and_rising_scores():
    """Taking 0 drops 1 to 4 − 5 = −1; 2 and 3 tie at 3 and the lower row goes first, its pass drops 3 to 0; then 3,
    then 1. A taken row with a negative score raises its neighbours: taking 2 (−1) lifts 4 from −2.5 to −1.5, above
    3 (−2), which a walk over the initial descending order would take first."""
    distances = np.zeros((4, 1))
    assert greedy_reverse(np.array([5.0, 4.0, 3.0, 3.0]), np.array([[1], [0], [3], [2]]), distances, 0.4,
                          4).tolist() == [0, 2, 3, 1]
    scores = np.array([1.0, 0.5, -1.0, -2.0, -2.5])
    neighbors = np.array([[-1], [-1], [4], [-1], [-1]])
    assert greedy_reverse(scores, neighbors, np.zeros((5, 1)), 0.4, 5).tolist() == [0, 1, 2, 4, 3]


def test_knn_excludes_self_and_marks_missing_neighbours():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids, dist = knn(x, 5)
    full = ((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    np.fill_diagonal(full, INF)
    np.testing.assert_array_equal(ids, np.argsort(full, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :5], rtol=1e-6)
    np.testing.assert_allclose(dist, 2 - 2 * np.take_along_axis(x @ x.T, ids, 1), atol=1e-5)  # ↔ cosine
    small, d_small = knn(x[:3], 5)  # 2 other rows: the rest is missing
    assert (small[:, 2:] == -1).all() and np.isinf(d_small[:, 2:]).all()
    assert all(i not in row for i, row in enumerate(small.tolist()))
    dup = np.repeat(x[:1], 8, axis=0)  # more duplicates than k: self may be crowded out, never listed
    assert all(i not in row for i, row in enumerate(knn(dup, 3)[0].tolist()))


def test_approximate_index_finds_most_exact_neighbours():
    x, _ = _planted(sizes=(100, 100, 100), spreads=(0.3, 0.3, 0.3), d=32)
    exact, _ = knn(x, 5)
    approx, dist = knn(x, 5, "approximate")
    assert all(i not in row for i, row in enumerate(approx.tolist()))
    found = sum(len(set(a) & set(b)) for a, b in zip(exact.tolist(), approx.tolist()))
    assert found / exact.size > 0.9
    np.testing.assert_allclose(dist, ((x[:, None] - x[approx]) ** 2).sum(-1), rtol=1e-6)  # exact distances


def _write_features(tmp_path, margin, x):
    stats, emb = tmp_path / "stats.npz", tmp_path / "emb.npz"
    np.savez(stats, margin=np.asarray(margin, np.float32)[:, None], n_answer=np.ones((len(x), 1), np.int64))
    np.savez(emb, mean=x[:, None].astype(np.float32), last=x[::-1, None].astype(np.float32))
    return {"proxy_token_stats": stats, "proxy_embeddings": emb}


def _planted(sizes=(60, 30, 30, 30, 30), spreads=(0.02, 0.15, 0.15, 0.15, 0.15), d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[: len(sizes)]
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = centres[truth] + np.repeat(spreads, sizes)[:, None] * rng.normal(size=(len(truth), d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


def test_spreads_over_planted_clusters_rather_than_the_densest(tmp_path, d2):
    """A tight cluster of 60 and four loose ones of 30, equal importance: the 60 highest forward scores are all
    the tight cluster's; the greedy with reverse passing takes from every cluster (k = 5 lowers 5 rows per pick,
    so the tight cluster still gives the most)."""
    x, truth = _planted(sizes=(60, 30, 30, 30, 30))
    margin = np.full(len(x), 0.5)
    ctx = Context("t", [{"id": str(i)} for i in range(len(x))], tmp_path, _write_features(tmp_path, margin, x),
                  _params(d2))
    method = d2()
    scores = method.score(ctx)
    n = 60
    by_forward = np.argsort(-scores["graph_score"], kind="stable")[:n]
    assert (truth[by_forward] == 0).all(), "the densest cluster holds every top forward score"
    rows = method.select(ctx, scores, n, seed=0).rows
    counts = np.bincount(truth[rows], minlength=5)
    assert (counts > 0).all() and counts[0] < 2 * n // 3, counts


def test_exactly_n_distinct_and_deterministic(tmp_path, d2):
    x, _ = _planted(seed=1)
    margin = np.random.default_rng(1).uniform(-0.5, 1, len(x))
    margin[[3, 9]] = np.nan  # no answer tokens
    ctx = Context("t", [{"id": str(i)} for i in range(len(x))], tmp_path, _write_features(tmp_path, margin, x),
                  _params(d2, k=[3], embedding=["last"]))
    method = d2()
    scores = method.score(ctx)
    assert scores["neighbors"].shape == (len(x), 3) and scores["importance"][3] == 0
    for n in (1, 37, len(x)):
        sel = method.select(ctx, scores, n, seed=0)
        assert len(sel.rows) == n == len(np.unique(sel.rows))
        np.testing.assert_array_equal(sel.rows, method.select(ctx, method.score(ctx), n, seed=5).rows)
    assert sel.details["unscored"] == 2 and sel.details["embedding"] == "last"


def test_rows_without_an_embedding_are_isolated(tmp_path, d2):
    x, _ = _planted(sizes=(20, 20), spreads=(0.1, 0.1))
    x[5] = np.nan
    ctx = Context("t", [{"id": str(i)} for i in range(len(x))], tmp_path,
                  _write_features(tmp_path, np.full(len(x), 0.5), x), _params(d2))
    scores = d2().score(ctx)
    assert (scores["neighbors"][5] == -1).all() and 5 not in scores["neighbors"]
    assert scores["graph_score"][5] == pytest.approx(0.5)
    assert len(np.unique(d2().select(ctx, scores, 40, 0).rows)) == 40


@pytest.mark.parametrize("bad, message", [({"k": 0}, "k must"), ({"gamma_reverse": -1}, "gamma_reverse"),
                                          ({"embedding": "cls"}, "embedding"), ({"index": "ivfpq"}, "index")])
def test_bad_parameters_are_rejected_when_planning(d2, bad, message):
    with pytest.raises(MethodError, match=message):
        expand({"d2_pruning": bad}, {"d2_pruning": d2})
    assert d2.parameters == {"k": 5, "gamma_forward": 1.0, "gamma_reverse": 0.4, "embedding": "mean",
                             "index": "exact"}


def test_scores_and_selects_the_tiny_pool_with_real_features(tmp_path, tiny_data, tiny_config, proxy_run):  # noqa: F811
    from selectbench.features.embeddings import extract_shard as embed_shard
    from selectbench.features.token_stats import extract_shard as stats_shard
    from selectbench.selection.run import score

    artifacts = {name: str(one_shard_feature(extract, tiny_data, tiny_config["models"]["proxy"], proxy_run["listing"],
                                             tmp_path, name))
                 for name, extract in (("proxy_token_stats", stats_shard), ("proxy_embeddings", embed_shard))}
    instance = expand({"d2_pruning": {}}, discover(METHODS))[0]
    scores = tmp_path / "scores.npz"
    score(METHODS, tiny_data, "digits", instance, artifacts, scores)
    with np.load(scores) as z, np.load(artifacts["proxy_token_stats"]) as s:
        np.testing.assert_array_equal(z["importance"], np.nan_to_num(s["margin"][:, 0].astype(np.float64)))
        assert (z["neighbors"] >= 0).all() and (z["neighbors"] != np.arange(len(tiny_data.pool))[:, None]).all()
    for ratio in (0.1, 0.5):
        select_twice(tiny_data, instance, scores, ratio, tmp_path, 1, "no randomness")
