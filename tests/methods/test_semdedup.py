"""semdedup on planted near-duplicates: hand-computed M, exact n, ε search monotone, determinism, checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from selectbench.selection.base import Context
from selectbench.selection.registry import MethodError, discover, expand

METHODS = str(Path(__file__).resolve().parents[2] / "methods")
DIM = 16


@pytest.fixture
def semdedup():
    return discover(METHODS)["semdedup"]


def _module(cls):
    """The method file's namespace (plug-ins are loaded by path, not as importable modules)."""
    return SimpleNamespace(**cls.select.__globals__)


def _planted(seed: int = 0):
    """Three well-separated groups of 30 distinct rows (cosine within a group ≲ 0.9), then 20 near-copies
    (cosine > 0.9999) of rows 0, 4, 8, … of the groups; returns rows and the (original, copy) pairs."""
    rng = np.random.default_rng(seed)
    centre = np.repeat(np.eye(DIM)[:3] * 3, 30, axis=0)
    x = centre + rng.normal(size=(90, DIM))
    originals = np.arange(0, 80, 4)
    copies = x[originals] + 1e-3 * rng.normal(size=(20, DIM))
    x = np.concatenate([x, copies]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, list(zip(originals, range(90, 110)))


def _run(cls, x, n, run_seed=0, **params):
    params = expand({"semdedup": {"clusters": 3, "device": "cpu", **params}}, {"semdedup": cls})[0].param_dict
    ctx = Context("synthetic", [{"id": str(i)} for i in range(len(x))], Path("."), {}, params)
    return cls().select(ctx, {"embedding": x}, n, run_seed)


def test_max_cosine_to_earlier_rows_by_hand(semdedup):
    angles = np.radians([0, 10, 50, 90])
    x = np.stack([np.cos(angles), np.sin(angles)], 1).astype(np.float32)
    to_centroid = np.array([0.9, 0.5, 0.7, 0.1])  # farthest first: rows 3, 1, 2, 0
    m = _module(semdedup).max_cosine_to_earlier(x, np.zeros(4, np.int64), to_centroid, keep_hard=True)
    np.testing.assert_allclose(m, [*np.cos(np.radians([10, 80, 40])), -np.inf], atol=1e-6)
    m = _module(semdedup).max_cosine_to_earlier(x, np.zeros(4, np.int64), to_centroid, keep_hard=False)
    # nearest first: rows 0, 2, 1, 3
    np.testing.assert_allclose(m, [-np.inf, *np.cos(np.radians([10, 50, 40]))], atol=1e-6)


def test_blocks_of_a_large_cluster_match_a_direct_loop(semdedup, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(23, 5)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, key = rng.integers(0, 2, 23), rng.random(23)
    monkeypatch.setitem(semdedup.select.__globals__, "BLOCK", 4)
    m = _module(semdedup).max_cosine_to_earlier(x, labels, key)
    for i in range(23):
        earlier = [j for j in range(23) if labels[j] == labels[i] and key[j] < key[i]]
        assert m[i] == pytest.approx(max((float(x[i] @ x[j]) for j in earlier), default=-np.inf), abs=1e-6)


@pytest.mark.parametrize("n", [30, 60, 89, 90, 91, 100, 110])
def test_planted_duplicates_go_first_and_exactly_n_are_kept(semdedup, n):
    x, pairs = _planted()
    sel = _run(semdedup, x, n)
    rows = set(sel.rows.tolist())
    assert len(sel.rows) == n == len(rows)
    both = sum(a in rows and b in rows for a, b in pairs)
    # the 20 copies are the only rows with M > 0.9999: a pair survives whole only once every distinct row is in
    assert both == max(0, n - 90)
    if n <= 90:
        assert sel.details["epsilon"] > 1e-4 and sel.details["duplicates_at_epsilon"] >= 110 - n


def test_epsilon_search_is_monotone_and_subsets_nested(semdedup):
    x, _ = _planted()
    previous_rows, previous_eps = None, None
    for n in range(3, 111, 7):
        sel = _run(semdedup, x, n)
        eps = sel.details["epsilon"]
        eps = np.inf if eps is None else eps  # None: only cluster heads kept, any ε
        if previous_rows is not None:
            assert eps <= previous_eps  # a larger budget never needs a larger ε
            assert previous_rows <= set(sel.rows.tolist())
        previous_rows, previous_eps = set(sel.rows.tolist()), eps


def test_deterministic_given_the_seed_and_ties_broken_by_it(semdedup):
    x, _ = _planted()
    x = np.concatenate([x, x[:10]])  # exact duplicates: tied M = 1 at the threshold
    a, b = _run(semdedup, x, 105, run_seed=3), _run(semdedup, x, 105, run_seed=3)
    np.testing.assert_array_equal(a.rows, b.rows)
    assert a.details["tied_at_threshold"] > 1
    others = {tuple(_run(semdedup, x, 105, run_seed=s, seed=3).rows) for s in range(4)}
    assert len(others) > 1, "with k-means fixed, the run's seed still breaks ties"


def test_default_clusters_scale_coincide_k_to_the_pool(semdedup):
    scaled = _module(semdedup).scaled_clusters
    assert scaled(665_298) == 10_000 and scaled(66_530) == 1000 and scaled(10) == 1


@pytest.mark.parametrize("bad", [{"embedding": "cls"}, {"clusters": 0}, {"clusters": True}, {"keep_hard": "yes"},
                                 {"kmeans_iterations": 0}, {"device": "tpu"}, {"seed": 1.5}])
def test_bad_parameters_are_rejected_when_planning(semdedup, bad):
    with pytest.raises(MethodError):
        expand({"semdedup": bad}, {"semdedup": semdedup})
