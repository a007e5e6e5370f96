"""Checkpoint choice, trajectory features and instability (total variation)."""

from __future__ import annotations

import numpy as np
import pytest

from selectbench.selection.clustering import kmeans
from selectbench.selection.trajectory import choose_checkpoints, instability, trajectory_matrix


def test_choose_checkpoints():
    assert choose_checkpoints(5, "all").tolist() == [0, 1, 2, 3, 4]
    assert choose_checkpoints(5, 3).tolist() == [0, 2, 4]
    assert choose_checkpoints(5, 1).tolist() == [4]  # a single checkpoint is the last one
    assert choose_checkpoints(5, [0, -1]).tolist() == [0, 4]
    with pytest.raises(ValueError):
        choose_checkpoints(5, 6)
    with pytest.raises(ValueError):
        choose_checkpoints(5, [7])


def test_features_and_instability():
    sv = np.array([[[[3.0, 1.0]], [[4.0, 2.0]], [[2.0, 2.0]]]])  # N=1, T=3, L'=1, k=2
    loss = np.array([[2.0, 1.0, 1.5]])
    s = trajectory_matrix(sv, loss, np.arange(3), "sum")
    assert s[0, :, 0].tolist() == [4.0, 6.0, 4.0]
    assert instability(s).tolist() == [4.0]  # |6-4| + |4-6|
    per = trajectory_matrix(sv, loss, np.arange(3), "per_sigma")
    assert per.shape == (1, 3, 2) and instability(per).tolist() == [1 + 1 + 2 + 0]
    assert instability(trajectory_matrix(sv, loss, np.array([0, 2]), "loss")).tolist() == [0.5]
    with pytest.raises(ValueError):
        trajectory_matrix(sv, loss, np.arange(3), "norm")


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_kmeans_recovers_separated_clusters_deterministically(backend):
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    truth = rng.integers(0, 3, 300)
    x = centres[truth] + rng.normal(0, 0.3, (300, 2)).astype(np.float32)
    labels = kmeans(x, 3, seed=0, backend=backend, n_init=10)
    for c in range(3):
        assert len(np.unique(labels[truth == c])) == 1
    np.testing.assert_array_equal(labels, kmeans(x, 3, seed=0, backend=backend, n_init=10))
    assert kmeans(x[:2], 5, seed=0, backend=backend).max() <= 1  # k capped by the rows
