"""coincide: the budget split, MMD prototypes and exact size against hand computations on planted clusters;
determinism; then scoring and selecting on the tiny proxy's pool with the real coincide_features."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from selectbench.features import ShardJob
from selectbench.selection.base import Context
from selectbench.selection.coincide import allocate, greedy_mmd
from selectbench.selection.registry import MethodError, discover, expand
from tests.features.conftest import proxy_run  # noqa: F401  (the tiny proxy fixture)

METHODS = str(Path(__file__).resolve().parents[2] / "methods")
TAU = 0.1


@pytest.fixture
def coincide():
    return discover(METHODS)["coincide"]


def _params(cls, **overrides):
    return expand({"coincide": {k: [v] if isinstance(v, list) else v for k, v in overrides.items()}},
                  {"coincide": cls})[0].param_dict


def _planted(tmp_path, sizes=(40, 40, 40, 40), seed=0):
    """Four clusters in 8 dims (image 4 | text 4, one layer, release layout [image, text]). Text directions:
    e0, (e0+e1)/√2, e1, e2, so cluster 1 is the most transferable and cluster 3 (orthogonal to all) the least;
    cluster 1 is also the most spread, i.e. the least dense."""
    rng = np.random.default_rng(seed)
    text = np.array([[1, 0, 0, 0], [1 / math.sqrt(2), 1 / math.sqrt(2), 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    image = np.eye(4)
    spread = [0.05, 0.3, 0.05, 0.05]
    x, truth = [], []
    for c, size in enumerate(sizes):
        centre = np.concatenate([image[c], text[c]]) / math.sqrt(2)
        x.append(centre + spread[c] * rng.normal(size=(size, 8)))
        truth += [c] * size
    x = np.concatenate(x).astype(np.float32)
    path = tmp_path / "coincide.npz"
    np.savez(path, coincide=x[:, None], covered=np.ones(len(x), bool), meta_layers=np.array([0]))
    return path, np.array(truth), x


def _ctx(tmp_path, params, **kw):
    path, truth, x = _planted(tmp_path, **kw)
    pool = [{"id": str(i), "image": "x.png"} for i in range(len(truth))]
    return Context("t", pool, tmp_path, {"coincide_features": path}, params), truth, x


def _planted_kmeans(truth):
    return lambda x, k, seed, niter, backend, spherical, gpu: truth.copy()


def _by_hand(x, truth, sigma=1.0, threshold=0.9):
    """Transferability and density of the planted clusters, written out pair by pair."""
    k = truth.max() + 1
    text = [x[truth == c][:, 4:].astype(np.float64).mean(0) for c in range(k)]
    transfer, density = [], []
    for c in range(k):
        cos = [text[c] @ text[o] / np.linalg.norm(text[c]) / np.linalg.norm(text[o]) for o in range(k)]
        kept = [v for v in cos if v <= threshold]
        transfer.append(sum(kept) / len(kept))
        m = x[truth == c].astype(np.float64)
        density.append(np.mean([[math.exp(-((a - b) ** 2).sum() / (2 * sigma ** 2)) for b in m] for a in m]))
    return np.array(transfer), np.array(density)


def test_allocation_by_hand():
    """Shares 1/2, 1/4, 1/8, 1/8; each cluster takes round(remaining × renormalised share)."""
    score = TAU * np.log([4.0, 2.0, 1.0, 1.0])
    taken, order, topped = allocate(score, np.array([100, 100, 100, 100]), 40, TAU)
    assert taken.tolist() == [20, 10, 5, 5] and order.tolist() == [0, 1, 2, 3] and topped == 0
    # cluster 1 has only 3: 17 left, cluster 2 gets round(8.5) = 8 (half to even, as Python's round), cluster 3 9
    assert allocate(score, np.array([100, 3, 100, 100]), 40, TAU)[0].tolist() == [20, 3, 8, 9]
    # small clusters everywhere: 5, 3, round(32/2) = 16, 2 → 26; the 14 left go to cluster 2, first with room
    taken, _, topped = allocate(score, np.array([5, 3, 100, 2]), 40, TAU)
    assert taken.tolist() == [5, 3, 30, 2] and topped == 14
    # a huge score does not overflow (the release's plain exp gives nan shares here)
    assert allocate(np.array([1000.0, 0.0]), np.array([10, 10]), 5, TAU)[0].tolist() == [5, 0]


def test_budget_split_follows_transferability_over_density(tmp_path, coincide, monkeypatch):
    ctx, truth, x = _ctx(tmp_path, _params(coincide, clusters=4))
    monkeypatch.setitem(coincide.select.__globals__, "kmeans", _planted_kmeans(truth))
    method = coincide()
    sel = method.select(ctx, method.score(ctx), 30, seed=0)
    transfer, density = _by_hand(x, truth)
    score = transfer / density
    shares = np.exp((score - score.max()) / TAU) / np.exp((score - score.max()) / TAU).sum()
    want, left = {}, 30
    for i, c in enumerate(np.argsort(-shares)):
        rest = np.argsort(-shares)[i:]
        want[c] = min(round(left * shares[c] / shares[rest].sum()), 40)
        left -= want[c]
    got = np.bincount(truth[sel.rows], minlength=4)
    assert got.tolist() == [want[c] for c in range(4)] and got.sum() == 30
    assert np.argmax(score) == 1 and np.argmax(got) == 1  # most transferable and least dense: the largest share
    assert got[3] == got.min()                            # transfers to no other cluster: the smallest
    assert sel.details["taken_per_cluster"]["1"] == [40, int(got[1])]


def test_greedy_mmd_prototype_order_by_hand():
    """x = 0, 1, 2.1, 3 (σ = 1). Column sums of K: 1.728, 2.288, 2.323, 1.813, so 2.1 first; then the candidate
    minimising 2K(2,c) − Σ_x K(x,c): c=0 −1.507, c=1 −1.196, c=3 −0.479, so 0; the rest by the same formula."""
    x = np.array([[0.0], [1.0], [2.1], [3.0]])
    assert greedy_mmd(x, 4, 1.0).tolist() == [2, 0, 3, 1]
    assert greedy_mmd(x, 2, 1.0).tolist() == [2, 0]
    assert greedy_mmd(np.zeros((3, 2)), 2, 1.0).tolist() == [0, 1]  # ties: the first minimum


@pytest.mark.parametrize("sizes, n", [((40, 40, 40, 40), 1), ((40, 40, 40, 40), 30), ((40, 40, 40, 40), 160),
                                      ((3, 2, 60, 5), 50), ((3, 2, 60, 5), 69)])
def test_exactly_n_even_when_clusters_are_smaller_than_their_shares(tmp_path, coincide, monkeypatch, sizes, n):
    ctx, truth, _ = _ctx(tmp_path, _params(coincide, clusters=4), sizes=sizes)
    monkeypatch.setitem(coincide.select.__globals__, "kmeans", _planted_kmeans(truth))
    method = coincide()
    rows = method.select(ctx, method.score(ctx), n, seed=0).rows
    assert len(rows) == n == len(np.unique(rows))


def test_deterministic_given_the_seed(tmp_path, coincide):
    ctx, truth, _ = _ctx(tmp_path, _params(coincide, clusters=6))
    method = coincide()
    scores = method.score(ctx)
    a = method.select(ctx, scores, 30, seed=3)
    np.testing.assert_array_equal(a.rows, method.select(ctx, scores, 30, seed=3).rows)
    assert a.details["kmeans_backend"].startswith("faiss ") and a.details["kmeans_seed"] == 3
    assert a.details["clusters"] == 6


def test_default_clusters_scale_with_the_pool(tmp_path, coincide, monkeypatch):
    seen = []
    monkeypatch.setitem(coincide.select.__globals__, "kmeans",
                        lambda x, k, *a, **kw: seen.append(k) or np.arange(len(x)) % 2)
    ctx, _, _ = _ctx(tmp_path, _params(coincide))
    coincide().select(ctx, coincide().score(ctx), 10, seed=0)
    assert seen == [2]  # round(160 / 66.5) = 2; 665k would give 10,000


def test_projection_keeps_the_text_half_apart(tmp_path, coincide):
    ctx, _, _ = _ctx(tmp_path, _params(coincide, projection=6))
    scores = coincide().score(ctx)
    assert scores["features"].shape == (160, 6)
    ctx_full, _, x = _ctx(tmp_path, _params(coincide))
    full = coincide().score(ctx_full)["features"]
    np.testing.assert_array_equal(full, x)  # one layer: the release layout is already [image | text]


@pytest.mark.parametrize("bad, message", [({"temperature": 0}, "temperature"), ({"clusters": 1}, "clusters"),
                                          ({"projection": 5}, "even"), ({"layers": [[3, 3]]}, "layers"),
                                          ({"layers": 3}, "layers"), ({"transfer_threshold": 2}, "transfer"),
                                          ({"kmeans_iterations": True}, "kmeans_iterations"),
                                          ({"kmeans_gpu": "yes"}, "kmeans_gpu")])
def test_bad_parameters_are_rejected_when_planning(coincide, bad, message):
    with pytest.raises(MethodError, match=message):
        expand({"coincide": bad}, {"coincide": coincide})


def test_scores_and_selects_the_tiny_pool_with_real_features(tmp_path, tiny_data, tiny_config, proxy_run,  # noqa: F811
                                                             coincide):
    from selectbench.features.coincide import extract_shard
    from selectbench.features.sharding import gather

    params = _params(coincide, layers=[0, 1])
    spec = coincide.feature_spec("coincide_features", params)
    assert spec == {"checkpoint": -1, "layers": [0, 1]}
    out = tmp_path / "s0.npz"
    extract_shard(ShardJob(tiny_data, {"proxy_checkpoints": proxy_run["listing"]}, spec,
                           tiny_config["models"]["proxy"], 0, 1, 8, out, device="cpu"))
    gather([out], len(tiny_data.pool), tmp_path / "features.npz")
    ctx = Context("digits", tiny_data.pool, tiny_data.image_root, {"coincide_features": tmp_path / "features.npz"},
                  params)
    method = coincide()
    scores = method.score(ctx)
    assert scores["features"].shape == (len(tiny_data.pool), 2 * 2 * 32)
    n = len(tiny_data.pool) // 5
    sel = method.select(ctx, scores, n, seed=0)
    assert len(sel.rows) == n == len(np.unique(sel.rows))
    assert sel.details["clusters"] == max(2, round(len(tiny_data.pool) / 66.5))
    assert sum(t for _, t in sel.details["taken_per_cluster"].values()) == n
