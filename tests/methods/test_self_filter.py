"""self_filter's stage 2 against hand computations (the diversity penalty, its k nearest untaken candidates,
short picks), score() from a score net and CLIP features on disk, and plan-time checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selectbench.selection.base import Context
from selectbench.selection.graph import penalised_greedy
from selectbench.selection.registry import MethodError, discover, expand

METHODS = str(Path(__file__).resolve().parents[2] / "methods")


@pytest.fixture
def self_filter():
    return discover(METHODS)["self_filter"]


def test_a_pick_lowers_its_nearest_untaken_candidate_by_gamma_d_cos_squared():
    """d = [3, 2.9, 1, 0.5], k_nearest 1, γ 1. Take 0 (3): its nearest untaken, 1 (cos .9), drops to
    2.9 − 3 · .81 = 0.47. Take 2 (1): its nearest untaken, 3 (cos .5), drops to 0.5 − 1 · .25 = 0.25. Then 1
    (0.47) beats 3 (0.25): [0, 2, 1], where difficulty alone gives [0, 1, 2]."""
    greedy = penalised_greedy
    d = np.array([3.0, 2.9, 1.0, 0.5])
    neighbors = np.array([[1, 2], [0, 3], [3, 0], [2, 1]])
    cos = np.array([[0.9, 0.1], [0.9, 0.2], [0.5, 0.1], [0.5, 0.2]])
    rows, short = greedy(d, neighbors, cos, 3, k_nearest=1, gamma=1.0)
    assert rows.tolist() == [0, 2, 1] and short == 0
    rows, short = greedy(d, neighbors, cos, 3, k_nearest=1, gamma=0.0)
    assert rows.tolist() == [0, 1, 2]
    # the fourth pick's candidates (2, 1) are both taken: it penalises nobody
    rows, short = greedy(d, neighbors, cos, 4, k_nearest=1, gamma=1.0)
    assert rows.tolist() == [0, 2, 1, 3] and short == 1


def test_only_the_k_nearest_candidates_are_penalised():
    """k_nearest 2: taking 0 (4) lowers its two nearest candidates, 1 and 2 (cos 1), by 4; the third, 3, keeps its
    2.0 and overtakes them."""
    greedy = penalised_greedy
    d = np.array([4.0, 3.0, 2.9, 2.0])
    neighbors = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    cos = np.ones((4, 3))
    rows, _ = greedy(d, neighbors, cos, 2, k_nearest=2, gamma=1.0)
    assert rows.tolist() == [0, 3]  # 1 → −1, 2 → −1.1; 3 untouched at 2.0


def test_a_negative_difficulty_raises_its_neighbours_as_the_release_does():
    greedy = penalised_greedy
    d = np.array([-1.0, -2.0, -1.5])
    neighbors = np.array([[1, 2], [0, 2], [0, 1]])
    cos = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    # take 0 (−1): row 1 → −2 − (−1) · 1 = −1, now above row 2 (−1.5)
    rows, _ = greedy(d, neighbors, cos, 2, k_nearest=1, gamma=1.0)
    assert rows.tolist() == [0, 1]


def test_score_reads_the_score_net_and_finds_cosine_neighbours(tmp_path, self_filter):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(30, 6))
    f[1] = f[0] * 2.0  # the same direction as row 0: cosine 1
    np.savez(tmp_path / "emb.npz", embedding=f[:, None, :].astype(np.float32), rows=np.arange(30))
    w = rng.normal(size=6)
    np.save(tmp_path / "w.npy", w)
    (tmp_path / "scorer.json").write_text(json.dumps({"score_net": str(tmp_path / "w.npy")}))
    params = expand({"self_filter": {"candidates": 5, "k_nearest": 2}}, {"self_filter": self_filter})[0].param_dict
    ctx = Context("t", [{"id": str(i)} for i in range(30)], tmp_path,
                  {"clip_embeddings": tmp_path / "emb.npz", "self_filter_scorer": tmp_path / "scorer.json"}, params)
    method = self_filter()
    scores = method.score(ctx)
    np.testing.assert_allclose(scores["difficulty"], -(f.astype(np.float32).astype(np.float64) @ w), rtol=1e-5)
    assert scores["neighbors"][0, 0] == 1 and scores["similarity"][0, 0] == pytest.approx(1.0, abs=1e-6)
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    np.testing.assert_allclose(scores["similarity"][5], unit[scores["neighbors"][5]] @ unit[5], atol=1e-5)
    sel = method.select(ctx, scores, 12, seed=0)
    assert len(set(sel.rows.tolist())) == 12
    assert sel.details["k_nearest"] == 2
    np.testing.assert_array_equal(sel.rows, method.select(ctx, scores, 12, seed=7).rows)  # no randomness


def test_a_score_net_of_another_width_is_refused(tmp_path, self_filter):
    np.savez(tmp_path / "emb.npz", embedding=np.ones((4, 1, 6), np.float32), rows=np.arange(4))
    np.save(tmp_path / "w.npy", np.ones(5))
    (tmp_path / "scorer.json").write_text(json.dumps({"score_net": str(tmp_path / "w.npy")}))
    params = expand({"self_filter": {}}, {"self_filter": self_filter})[0].param_dict
    ctx = Context("t", [{"id": str(i)} for i in range(4)], tmp_path,
                  {"clip_embeddings": tmp_path / "emb.npz", "self_filter_scorer": tmp_path / "scorer.json"}, params)
    with pytest.raises(ValueError, match="score net of width"):
        self_filter().score(ctx)


@pytest.mark.parametrize("bad, message", [({"k_nearest": 0}, "k_nearest"),
                                          ({"candidates": 5}, "candidates must be an integer ≥ 10"),
                                          ({"gamma": -1}, "gamma"), ({"index": "ivf"}, "index")])
def test_bad_parameters_are_rejected_when_planning(self_filter, bad, message):
    with pytest.raises(MethodError, match=message):
        expand({"self_filter": bad}, {"self_filter": self_filter})
