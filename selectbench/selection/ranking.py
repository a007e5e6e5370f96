"""Shared base of methods that rank the pool by one per-example statistic of a shared feature (perplexity,
EL2N, CLIP score, …) and keep a band of the ranking (low | middle | high, recorded in the subset sidecar).
Rows whose statistic is missing (NaN) are ranked out of every band and taken only if the budget needs them."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from selectbench.features.sharding import load_npz
from selectbench.selection.base import Method, Selection, band_indices, check_band


class FeatureRanking(Method):
    """Subclasses set name, feature, statistic (a column of the feature), requires and parameters['band']."""

    feature: ClassVar[str]
    statistic: ClassVar[str]
    parameters: ClassVar[dict[str, Any]] = {"band": "middle"}

    @classmethod
    def check(cls, params):
        check_band(params)

    def score(self, ctx):
        values = load_npz(ctx.artifacts[self.feature], [self.statistic])[self.statistic][:, 0]
        return {self.statistic: values}

    def select(self, ctx, scores, n, seed):
        values = scores[self.statistic]
        return Selection(band_indices(values, n, ctx.params["band"]),
                         {"band": ctx.params["band"], "statistic": self.statistic,
                          "unscored": int(np.isnan(values).sum())})


class ProxyStatisticRanking(FeatureRanking):
    """Ranking by a statistic of the proxy's answer tokens (one shared pass: selectbench.features.token_stats);
    parameter checkpoint picks which proxy checkpoint scores (-1: the end of its fine-tune)."""

    feature = "proxy_token_stats"
    requires = ("proxy_token_stats",)
    parameters: ClassVar[dict[str, Any]] = {"band": "middle", "checkpoint": -1}

    @classmethod
    def check(cls, params):
        super().check(params)
        if not isinstance(params["checkpoint"], int):
            raise ValueError(f"checkpoint must be an index into the proxy's checkpoints, got {params['checkpoint']!r}")

    @classmethod
    def feature_spec(cls, feature, params):
        return {"checkpoint": params["checkpoint"]}
