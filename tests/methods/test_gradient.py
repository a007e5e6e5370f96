"""gradient: targets none / self / validation on synthetic LoRA-gradient features; the validation target's
LESS score, band, exact size, determinism, task-aware flag and sidecar (the score against a direct
re-computation from real gradients is in tests/features/test_gradients.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selectbench.selection.base import Context
from selectbench.selection.registry import Instance, MethodError, discover, expand

METHODS = str(Path(__file__).resolve().parents[2] / "methods")
DIM = 8


@pytest.fixture
def gradient():
    return discover(METHODS)["gradient"]


def _params(cls, **overrides):
    return expand({"gradient": overrides}, {"gradient": cls})[0].param_dict


def _features(path: Path, n: int = 200, seed: int = 0, uncovered: bool = True) -> Path:
    """Pool gradients around three directions: task a's, task b's and an unrelated one (rows 0-59, 60-119,
    120-199); a's validation gradients point along e0, b's along e1. Row 7 has no gradient (zero), row 8 is
    uncovered (NaN)."""
    rng = np.random.default_rng(seed)
    basis = np.eye(DIM)
    centre = np.repeat(np.stack([basis[0], basis[1], basis[2]]), [60, 60, n - 120], axis=0)
    projected = (centre * rng.uniform(0.5, 2.0, (n, 1)) + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)
    projected[7] = 0
    if uncovered:
        projected[8] = np.nan
    validation = np.concatenate([basis[0] + 0.1 * rng.normal(size=(4, DIM)),
                                 basis[1] + 0.1 * rng.normal(size=(3, DIM))]).astype(np.float32)
    np.savez(path, projected=projected[:, None], grad_norm=np.linalg.norm(projected, axis=1)[:, None],
             meta_validation_projected=validation, meta_validation_task=np.array(["a"] * 4 + ["b"] * 3),
             meta_validation_id=np.array([f"v{i}" for i in range(7)]))
    return path


def _ctx(tmp_path, params, n=200, uncovered=True):
    pool = [{"id": str(i)} for i in range(n)]
    path = _features(tmp_path / "g.npz", n, uncovered=uncovered)
    return Context("t", pool, tmp_path, {"lora_gradients": path}, params)


def test_validation_score_is_the_max_over_tasks_of_the_mean_cosine(tmp_path, gradient):
    ctx = _ctx(tmp_path, _params(gradient, target="validation"))
    scores = gradient().score(ctx)
    with np.load(ctx.artifacts["lora_gradients"]) as z:
        x, v, tasks = z["projected"][:, 0].astype(np.float64), z["meta_validation_projected"], z["meta_validation_task"]
    for r in (0, 61, 150):
        cos = [(x[r] @ u) / np.linalg.norm(x[r]) / np.linalg.norm(u) for u in v]
        per_task = [np.mean([c for c, t in zip(cos, tasks) if t == name]) for name in ("a", "b")]
        assert scores["task_score_a"][r] == pytest.approx(per_task[0])
        assert scores["task_score_b"][r] == pytest.approx(per_task[1])
        assert scores["score"][r] == pytest.approx(max(per_task))
    assert np.isnan(scores["score"][[7, 8]]).all()  # no gradient: never ranked inside a band


def test_validation_keeps_the_band_exactly_and_deterministically(tmp_path, gradient):
    for band in ("low", "middle", "high"):
        ctx = _ctx(tmp_path, _params(gradient, target="validation", band=band))
        method = gradient()
        scores = method.score(ctx)
        sel = method.select(ctx, scores, 50, seed=0)
        assert len(sel.rows) == 50 == len(np.unique(sel.rows))
        ranked = np.sort(scores["score"][~np.isnan(scores["score"])])
        want = {"low": ranked[:50], "middle": ranked[(198 - 50) // 2:(198 - 50) // 2 + 50], "high": ranked[-50:]}
        np.testing.assert_array_equal(np.sort(scores["score"][sel.rows]), want[band])
        np.testing.assert_array_equal(sel.rows, method.select(ctx, method.score(ctx), 50, seed=0).rows)
        if band == "high":  # the task-related rows (0-119) win over the unrelated ones
            assert (sel.rows < 120).all()
            assert sel.details["kept_by_best_task"]["a"] > 0 and sel.details["kept_by_best_task"]["b"] > 0
    assert gradient.parameters["band"] == "high"


def test_validation_is_flagged_task_aware(tmp_path, gradient):
    assert gradient.task_aware(_params(gradient, target="validation"))
    assert not gradient.task_aware(_params(gradient, target="none"))
    assert not gradient.task_aware(_params(gradient, target="self"))
    ctx = _ctx(tmp_path, _params(gradient, target="validation"))
    details = gradient().select(ctx, gradient().score(ctx), 10, seed=0).details
    assert details["task_aware"] is True and details["validation_tasks"] == ["a", "b"]
    assert sum(details["kept_by_best_task"].values()) == 10
    none = _ctx(tmp_path, _params(gradient, target="none"))
    assert gradient().select(none, gradient().score(none), 10, seed=0).details["task_aware"] is False


def test_validation_without_validation_gradients_is_a_clear_error(tmp_path, gradient):
    path = tmp_path / "plain.npz"
    np.savez(path, projected=np.ones((5, 1, DIM), np.float32), grad_norm=np.ones((5, 1), np.float32))
    ctx = Context("t", [{"id": str(i)} for i in range(5)], tmp_path, {"lora_gradients": path},
                  _params(gradient, target="validation"))
    with pytest.raises(ValueError, match="no validation gradients"):
        gradient().score(ctx)


def test_bad_target_is_rejected_when_planning(gradient):
    with pytest.raises(MethodError, match="target"):
        expand({"gradient": {"target": "benchmark"}}, {"gradient": gradient})
    labels = [i.label for i in expand({"gradient": {"target": ["none", "validation"]}}, {"gradient": gradient})]
    assert labels == ["gradient__target-none", "gradient__target-validation"]


def test_subset_sidecar_says_task_aware_with_the_tasks(tmp_path, tiny_data, gradient):
    """Through the select step: the sidecar records task_aware and the validation tasks."""
    from selectbench.selection.run import select

    n = len(tiny_data.pool)
    params = _params(gradient, target="validation")
    ctx = Context("digits", tiny_data.pool, tiny_data.image_root,
                  {"lora_gradients": _features(tmp_path / "g.npz", n)}, params)
    scores_path = tmp_path / "scores.npz"
    np.savez(scores_path, **gradient().score(ctx))
    instance = Instance("gradient__target-validation", "gradient", tuple(sorted(params.items())))
    meta = select(METHODS, tiny_data, "digits", instance, scores_path, 0.1, 0, tmp_path / "sub" / "r0.1_s0.json")
    sidecar = json.loads((tmp_path / "sub" / "r0.1_s0.meta.json").read_text())
    assert sidecar == json.loads(json.dumps(meta))
    assert sidecar["details"]["task_aware"] is True and sidecar["details"]["validation_tasks"] == ["a", "b"]
    assert sidecar["parameters"]["target"] == "validation" and sidecar["size"] == round(0.1 * n)


def test_none_ranks_by_gradient_norm_and_self_by_cluster_cosine(tmp_path, gradient):
    ctx = _ctx(tmp_path, _params(gradient, target="none"))
    scores = gradient().score(ctx)
    with np.load(ctx.artifacts["lora_gradients"]) as z:
        np.testing.assert_array_equal(scores["score"], z["grad_norm"][:, 0])
    ctx = _ctx(tmp_path, _params(gradient, target="self", clusters=3), uncovered=False)
    scores = gradient().score(ctx)
    assert set(np.unique(scores["cluster"])) == {0, 1, 2} and "task_score_a" not in scores


def _two_task_scores():
    """Task a scores rows 0-49 high (0.9-1.0), task b rows 50-99 moderately (0.3-0.4); rows 98-99 unscored."""
    a, b = np.zeros(100), np.zeros(100)
    a[:50] = np.linspace(0.9, 1.0, 50)
    b[50:] = np.linspace(0.3, 0.4, 50)
    a[98:], b[98:] = np.nan, np.nan
    return {"score": np.fmax(a, b), "task_score_a": a, "task_score_b": b}


def test_balanced_aggregate_gives_every_task_an_equal_share(tmp_path, gradient):
    scores = _two_task_scores()
    pool = [{"id": str(i)} for i in range(100)]
    by_max = gradient().select(Context("t", pool, tmp_path, {}, _params(gradient, target="validation")),
                               scores, 20, seed=0)
    assert (by_max.rows < 50).all()  # LESS's max: the high-scoring task takes the whole budget
    ctx = Context("t", pool, tmp_path, {}, _params(gradient, target="validation", aggregate="balanced"))
    sel = gradient().select(ctx, scores, 20, seed=0)
    assert len(sel.rows) == 20 == len(np.unique(sel.rows))
    assert sorted(sel.rows.tolist()) == list(range(40, 50)) + list(range(88, 98))  # each task's best ten
    assert sel.details["aggregate"] == "balanced" and sel.details["task_aware"] is True
    np.testing.assert_array_equal(sel.rows, gradient().select(ctx, scores, 20, seed=1).rows)
    everything = gradient().select(ctx, scores, 100, seed=0).rows
    assert sorted(everything.tolist()) == list(range(100)) and set(everything[-2:].tolist()) == {98, 99}


def test_balanced_aggregate_needs_the_validation_target_and_the_high_band(gradient):
    for overrides in ({"target": "none", "aggregate": "balanced"},
                      {"target": "validation", "aggregate": "balanced", "band": "low"},
                      {"target": "validation", "aggregate": "sum"}):
        with pytest.raises(MethodError, match="aggregate"):
            _params(gradient, **overrides)
