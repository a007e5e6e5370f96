"""Cluster-balanced sampling as XMAS specifies it, against planted clusters of very different sizes."""

from __future__ import annotations

import numpy as np
import pytest

from selectbench.selection.balanced import balanced_sample


def _planted(sizes):
    return np.repeat(np.arange(len(sizes)), sizes)


def test_quotas_go_smallest_first_and_unused_quota_flows_on():
    labels = _planted([600, 200, 40, 10, 5, 2])
    priority = np.arange(len(labels), dtype=float)
    s = balanced_sample(labels, priority, 100, seed=0)
    counts = np.bincount(labels[s.rows], minlength=6)
    # cluster 5 (2 members) is dropped; 5 → 20 each: 5 takes all 5, 10 takes all 10 (quota 23), then
    # remaining 85 over 3 clusters: 40 → 28, then 57 over 2: 200 → 28, 600 → 29
    assert counts.tolist() == [29, 28, 28, 10, 5, 0]
    assert s.dropped == [5] and s.filled == 0
    assert len(s.rows) == 100 and len(np.unique(s.rows)) == 100
    random = np.random.default_rng(0).choice(len(labels), 100, replace=False)
    assert np.bincount(labels[random], minlength=6)[0] > 60, "random follows cluster sizes; XMAS does not"


def test_stable_examples_first_inside_a_cluster():
    labels = _planted([10, 10])
    priority = np.array([5, 1, 9, 0, 3, 8, 2, 7, 6, 4] * 2, dtype=float)
    s = balanced_sample(labels, priority, 6, seed=0)
    assert sorted(s.rows.tolist()) == [1, 3, 6, 11, 13, 16]


def test_random_clusters_and_order_are_seeded():
    labels = _planted([50, 50])
    priority = np.zeros(100)
    a = balanced_sample(labels, priority, 10, seed=1, random_clusters=frozenset({1}))
    b = balanced_sample(labels, priority, 10, seed=1, random_clusters=frozenset({1}))
    c = balanced_sample(labels, priority, 10, seed=2, random_clusters=frozenset({1}))
    np.testing.assert_array_equal(a.rows, b.rows)
    assert set(a.rows[a.rows < 50]) == set(range(5)), "stable cluster: lowest priority, then row order"
    assert set(a.rows[a.rows >= 50]) != set(c.rows[c.rows >= 50])
    d = balanced_sample(labels, priority, 10, seed=1, order="random")
    assert set(d.rows[d.rows < 50]) != set(range(5))


def test_budget_beyond_kept_clusters_is_filled_from_dropped_ones():
    labels = _planted([4, 2, 1])
    s = balanced_sample(labels, np.arange(7.0), 6, seed=0)
    assert len(np.unique(s.rows)) == 6 and s.filled == 2
    with pytest.raises(ValueError, match="exceeds"):
        balanced_sample(labels, np.arange(7.0), 8, seed=0)
