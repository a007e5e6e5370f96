"""The xmas plug-in on synthetic trajectories with planted clusters: exact size, determinism, balance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selectbench.selection.base import Context, subset_size
from selectbench.selection.registry import discover, expand

METHODS = str(Path(__file__).resolve().parents[2] / "methods")
SIZES = [600, 200, 80, 40, 20]  # planted image clusters of very different sizes


@pytest.fixture
def xmas():
    return discover(METHODS)["xmas"]


def _context(tmp_path, params, n_text=40):
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(len(SIZES)), SIZES)
    n_img = len(truth)
    # per-checkpoint top-5 singular values: each planted cluster has its own level and slope over 4 checkpoints
    level = np.array([1.0, 3.0, 5.0, 7.0, 9.0])[truth]
    slope = np.array([0.5, -0.5, 1.0, 0.0, -1.0])[truth]
    t = np.arange(4)
    base = level[:, None] + slope[:, None] * t[None, :] + rng.normal(0, 0.05, (n_img, 4))
    sv = np.stack([base * w for w in (0.5, 0.2, 0.15, 0.1, 0.05)], axis=-1)[:, :, None, :]
    pool = [{"id": f"i{i}", "image": "x.png"} for i in range(n_img)] + [{"id": f"t{i}"} for i in range(n_text)]
    full_sv = np.full((len(pool), 4, 1, 5), np.nan, np.float32)
    full_sv[:n_img] = sv
    loss = np.full((len(pool), 4), np.nan, np.float32)
    loss[:n_img] = rng.random((n_img, 4))
    path = tmp_path / "traj.npz"
    np.savez(path, sv=full_sv, loss=loss, covered=np.arange(len(pool)) < n_img)
    ctx = Context("synthetic", pool, tmp_path, {"attention_trajectories": path}, params)
    return ctx, truth


def _params(xmas, **overrides):
    return expand({"xmas": {"clusters": 5, "kmeans_restarts": 5, "kmeans_backend": "sklearn",
                                  **overrides}}, {"xmas": xmas})[0].param_dict


def test_balanced_across_planted_clusters_unlike_random(tmp_path, xmas):
    params = _params(xmas, clusters=6)  # as released, the text-only rows' zero trajectories take one cluster
    ctx, truth = _context(tmp_path, params)
    method = xmas()
    scores = method.score(ctx)
    n = subset_size(0.1, ctx.size)
    sel = method.select(ctx, scores, n, seed=0)
    rows = sel.rows
    assert len(rows) == n == len(np.unique(rows))
    image = rows[rows < len(truth)]
    counts = np.bincount(truth[image], minlength=len(SIZES))
    # 98 over six clusters (five planted + text-only): 16 each from the smallest, the last two 17
    counts = np.append(counts, (rows >= len(truth)).sum())
    assert sorted(counts.tolist()) == [16, 16, 16, 16, 17, 17], counts
    random = np.random.default_rng(0).choice(ctx.size, n, replace=False)
    assert np.bincount(truth[random[random < len(truth)]], minlength=5)[0] > 2 * counts[0]
    assert sel.details["clusters"] == 5 and sel.details["filled_from_dropped"] == 0


def test_deterministic_per_seed_and_stable_first(tmp_path, xmas):
    ctx, truth = _context(tmp_path, _params(xmas))
    method = xmas()
    scores = method.score(ctx)
    a, b = method.select(ctx, scores, 100, 0).rows, method.select(ctx, scores, 100, 0).rows
    np.testing.assert_array_equal(a, b)
    c = method.select(ctx, scores, 100, 1).rows
    assert set(a) != set(c)  # the text-only cluster is a seeded random draw
    # inside the largest planted cluster, the chosen examples are its most stable ones
    big = np.flatnonzero(truth == 0)
    chosen = np.intersect1d(a, big)
    threshold = np.sort(scores["instability"][big])[len(chosen) - 1]
    assert (scores["instability"][chosen] <= threshold + 1e-6).all()


def test_instability_is_total_variation_of_the_sum_of_top_k(tmp_path, xmas):
    ctx, _ = _context(tmp_path, _params(xmas))
    scores = xmas().score(ctx)
    with np.load(ctx.artifacts["attention_trajectories"]) as z:
        s = z["sv"][0, :, 0, :].sum(-1)
    assert scores["instability"][0] == pytest.approx(np.abs(np.diff(s)).sum(), rel=1e-5)
    assert scores["features"].shape == (ctx.size, 4)
    per = xmas().score(_context(tmp_path, _params(xmas, variant="paper", checkpoints=2))[0])
    assert per["features"].shape == (ctx.size, 2 * 5)  # each σ of 2 checkpoints


def test_variants_and_knobs_map_to_feature_specs(xmas):
    released = xmas.feature_spec("attention_trajectories", _params(xmas))
    assert released == {"attention": "released", "combine": "sum", "k": 5, "layers": "all", "svd": "exact",
                        "skip_after_image": 1}
    paper = xmas.feature_spec("attention_trajectories", _params(xmas, variant="paper", combine="concat"))
    assert paper["attention"] == "paper" and paper["combine"] == "concat" and paper["skip_after_image"] == 0
    assert xmas.feature_spec("attention_trajectories", _params(xmas, skip_after_image=0))["skip_after_image"] == 0
    # selection-only knobs share one extraction
    assert xmas.feature_spec("attention_trajectories", _params(xmas, clusters=7, order="random")) == released
    with pytest.raises(ValueError, match="variant"):
        xmas.feature_spec("attention_trajectories", {**xmas.parameters, "variant": "v2"})


@pytest.mark.parametrize("variant, kmeans_rows, clustered", [("released", None, "all"), ("paper", None, "image"),
                                                             ("released", "image", "image")])
def test_kmeans_rows_as_released_include_text_only_rows_as_zeros(tmp_path, xmas, monkeypatch, variant, kmeans_rows,
                                                                  clustered):
    """The release clusters every row (text-only trajectories as zeros), then moves text-only rows to a cluster
    of their own numbered after the largest k-means label."""
    seen = []

    def fake_kmeans(x, k, seed, niter, backend, n_init):
        seen.append(x)
        return np.arange(len(x)) % k  # the text-only rows (last) get labels as any other row

    monkeypatch.setitem(xmas.select.__globals__, "kmeans", fake_kmeans)
    ctx, truth = _context(tmp_path, _params(xmas, variant=variant, kmeans_rows=kmeans_rows))
    method = xmas()
    sel = method.select(ctx, method.score(ctx), 100, seed=0)
    x, n_img = seen[0], len(truth)
    if clustered == "all":
        assert len(x) == ctx.size and not x[n_img:].any() and np.isfinite(x).all()
    else:
        assert len(x) == n_img
    assert sel.details["text_only_cluster"] == 5  # labels 0..4 from k-means, text-only after them
    assert sel.details["kmeans_rows"] == clustered


@pytest.mark.parametrize("bad, message", [({"variant": "v2"}, "variant"), ({"order": "best"}, "order"),
                                          ({"clusters": 0}, "clusters"), ({"feature": "norm"}, "feature"),
                                          ({"kmeans_rows": "text"}, "kmeans_rows"),
                                          ({"skip_after_image": 3}, "skip_after_image")])
def test_bad_parameters_are_rejected_when_planning(xmas, bad, message):
    from selectbench.selection.registry import MethodError

    with pytest.raises(MethodError, match=message):
        expand({"xmas": bad}, {"xmas": xmas})
