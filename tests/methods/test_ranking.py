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
