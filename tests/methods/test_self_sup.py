"""self_sup on planted prototypes: the score is the cosine distance to the prototype, computed by hand, and the
bands keep the farthest / nearest / middle rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selectbench.selection.base import Context
from selectbench.selection.registry import MethodError, discover, expand

METHODS = str(Path(__file__).resolve().parents[2] / "methods")
DIM = 12


@pytest.fixture
def self_sup():
    return discover(METHODS)["self_sup"]


def _planted():
    """Three orthogonal prototypes e0, e1, e2; around each, 20 rows at distinct angles θ in ±pairs along e3+j
    (so each cluster's mean points at its prototype, to ~1e-4): row = cos θ · e_p ± sin θ · e_(3+j)."""
    basis = np.eye(DIM)
    rows, theta = [], []
    angles = np.radians(np.linspace(2, 40, 30))
    for p in range(3):
        for j in range(10):
            t = angles[(p * 10 + j * 7) % 30]  # every group gets a spread of angles, all distinct
            for sign in (1, -1):
                theta.append(t + (1e-4 if sign < 0 else 0))  # the − twin a hair farther: a strict order
                rows.append(np.cos(theta[-1]) * basis[p] + sign * np.sin(theta[-1]) * basis[3 + (p * 3 + j) % 9])
    return np.array(rows, np.float32), np.array(theta)


def _run(cls, x, n, **params):
    params = expand({"self_sup": {"clusters": 3, "device": "cpu", **params}}, {"self_sup": cls})[0].param_dict
    ctx = Context("synthetic", [{"id": str(i)} for i in range(len(x))], Path("."), {}, params)
    return cls().select(ctx, {"embedding": x}, n, 0)


def test_keeps_the_rows_farthest_from_their_prototype(self_sup):
    x, theta = _planted()
    for n in (5, 20, 47):
        sel = _run(self_sup, x, n)
        assert len(sel.rows) == n == len(set(sel.rows.tolist()))
        assert set(sel.rows.tolist()) == set(np.argsort(-theta)[:n].tolist())
        assert sel.details["band"] == "high"


def test_low_and_middle_bands(self_sup):
    x, theta = _planted()
    order = np.argsort(theta)
    assert set(_run(self_sup, x, 10, band="low").rows.tolist()) == set(order[:10].tolist())
    assert set(_run(self_sup, x, 10, band="middle").rows.tolist()) == set(order[25:35].tolist())


def test_score_is_the_cosine_distance_to_the_planted_prototype(self_sup):
    from selectbench.selection.embedding_clusters import spherical_kmeans

    x, theta = _planted()
    clusters = spherical_kmeans(x, 3, seed=0, device="cpu")
    np.testing.assert_allclose(1 - clusters.cosine, 1 - np.cos(theta), atol=1e-5)
    np.testing.assert_allclose(np.abs(clusters.centroids[:, :3]).max(1), 1, atol=1e-5)
    assert len(set(clusters.labels[:20])) == 1 and len(set(clusters.labels.tolist())) == 3


def test_deterministic_given_the_seed(self_sup):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b = _run(self_sup, x, 50, clusters=7), _run(self_sup, x, 50, clusters=7)
    np.testing.assert_array_equal(a.rows, b.rows)


@pytest.mark.parametrize("bad", [{"band": "top"}, {"embedding": "cls"}, {"clusters": 0}, {"clusters": True},
                                 {"kmeans_iterations": -1}, {"device": "tpu"}])
def test_bad_parameters_are_rejected_when_planning(self_sup, bad):
    with pytest.raises(MethodError):
        expand({"self_sup": bad}, {"self_sup": self_sup})
