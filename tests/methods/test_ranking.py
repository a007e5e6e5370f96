"""perplexity and el2n: the band they keep, exact size, determinism, NaN-scored rows, plan-time checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selectbench.selection.base import Context, band_indices
from selectbench.selection.registry import MethodError, discover, expand

METHODS = str(Path(__file__).resolve().parents[2] / "methods")


def _ctx(tmp_path, params, values):
    path = tmp_path / "stats.npz"
    col = values[:, None].astype(np.float32)
    np.savez(path, nll=col, el2n=col[::-1].copy(), n_answer=np.ones_like(col, dtype=np.int64))
    pool = [{"id": str(i)} for i in range(len(values))]
    return Context("t", pool, tmp_path, {"proxy_token_stats": path}, params)


@pytest.mark.parametrize("name, column, default_band", [("perplexity", "nll", "middle"), ("el2n", "el2n", "high")])
def test_band_and_size(tmp_path, name, column, default_band):
    cls = discover(METHODS)[name]
    values = np.random.default_rng(0).permutation(100).astype(float)
    for band in ("low", "middle", "high"):
        params = expand({name: {"band": band}}, {name: cls})[0].param_dict
        ctx = _ctx(tmp_path, params, values)
        method = cls()
        scores = method.score(ctx)
        sel = method.select(ctx, scores, 10, seed=0)
        kept = np.sort(scores[column][sel.rows])
        ranked = np.sort(scores[column])
        want = {"low": ranked[:10], "middle": ranked[45:55], "high": ranked[90:]}[band]
        np.testing.assert_array_equal(kept, want)
        np.testing.assert_array_equal(sel.rows, method.select(ctx, scores, 10, seed=1).rows)
        assert sel.details["band"] == band
    assert cls.parameters["band"] == default_band


def test_unscored_rows_are_used_last():
    scores = np.array([3.0, np.nan, 1.0, 2.0, np.nan])
    assert band_indices(scores, 3, "high").tolist() == [2, 3, 0]
    assert band_indices(scores, 1, "middle").tolist() == [3]
    assert sorted(band_indices(scores, 4, "low").tolist()) == [0, 1, 2, 3]


def test_bad_band_is_rejected_when_planning():
    cls = discover(METHODS)["perplexity"]
    with pytest.raises(MethodError, match="band"):
        expand({"perplexity": {"band": "top"}}, {"perplexity": cls})


@pytest.mark.parametrize("name", ["perplexity", "el2n", "hl"])
def test_model_picks_the_scoring_pass(tmp_path, name):
    """model: proxy reads the proxy's statistics, target_full the full-data target's; the DAG builds only the one
    the setting needs (Method.required)."""
    cls = discover(METHODS)[name]
    values = np.arange(10, dtype=float)
    for model, feature in (("proxy", "proxy_token_stats"), ("target_full", "target_token_stats")):
        params = expand({name: {"model": model}}, {name: cls})[0].param_dict
        assert cls.required(params) == (feature,)
        ctx = _ctx(tmp_path, params, values)
        ctx.artifacts = {feature: ctx.artifacts["proxy_token_stats"]}  # only the one it asked for
        sel = cls().select(ctx, cls().score(ctx), 3, seed=0)
        assert sel.details["model"] == model


def test_hl_is_the_high_loss_band_of_the_full_data_target():
    cls = discover(METHODS)["hl"]
    assert (cls.statistic, cls.parameters["band"], cls.parameters["model"]) == ("nll", "high", "target_full")


@pytest.mark.parametrize("override, message", [({"model": "teacher"}, "model must be one of"),
                                               ({"model": "target_full", "checkpoint": 2}, "one model")])
def test_bad_model_settings_are_rejected_when_planning(override, message):
    cls = discover(METHODS)["perplexity"]
    with pytest.raises(MethodError, match=message):
        expand({"perplexity": override}, {"perplexity": cls})


def test_required_must_stay_within_requires():
    from selectbench.selection.base import Method

    class Sneaky(Method):
        name = "sneaky"
        requires = ("proxy_token_stats",)

        @classmethod
        def required(cls, params):
            return ("clip_score",)

    with pytest.raises(MethodError, match="does not declare"):
        expand({"sneaky": {}}, {"sneaky": Sneaky})
