"""Shared base of methods that rank the pool by one per-example statistic of a shared feature (perplexity,
EL2N, CLIP score, …) and keep a band of the ranking (low | middle | high, recorded in the subset sidecar).
Rows whose statistic is missing (NaN) are ranked out of every band and taken only if the budget needs them."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from selectbench.features.sharding import load_npz
from selectbench.selection.base import Method, Selection, band_indices, check_band
from selectbench.selection.checks import checkpoint_index, one_of


class FeatureRanking(Method):
    """Subclasses set name, feature (or feature_for), statistic (a column of the feature), requires and
    parameters['band']."""

    feature: ClassVar[str]
    statistic: ClassVar[str]
    parameters: ClassVar[dict[str, Any]] = {"band": "middle"}

    @classmethod
    def check(cls, params):
        check_band(params)

    @classmethod
    def feature_for(cls, params: dict[str, Any]) -> str:
        """The feature these parameters rank by: `feature`, unless a subclass chooses among several."""
        return cls.feature

    def score(self, ctx):
        feature = self.feature_for(ctx.params)
        values = load_npz(ctx.artifacts[feature], [self.statistic])[self.statistic][:, 0]
        return {self.statistic: values}

    def select(self, ctx, scores, n, seed):
        values = scores[self.statistic]
        return Selection(band_indices(values, n, ctx.params["band"]),
                         {"band": ctx.params["band"], "statistic": self.statistic,
                          "unscored": int(np.isnan(values).sum())})


class ProxyStatisticRanking(FeatureRanking):
    """Ranking by a statistic of a model's answer tokens (one shared pass: selectbench.features.token_stats).
    Parameter model picks the scoring model: proxy (the small fine-tuned proxy every proxy method shares; then
    checkpoint picks which of its checkpoints, -1 = the end of its fine-tune) or target_full (the target fine-tuned
    on the whole pool, i.e. the full-data reference run, as the XMAS paper scores HL and MP: no cheaper than
    training on everything, which the cost table shows)."""

    requires = ("proxy_token_stats", "target_token_stats")
    parameters: ClassVar[dict[str, Any]] = {"band": "middle", "model": "proxy", "checkpoint": -1}

    MODELS: ClassVar[dict[str, str]] = {"proxy": "proxy_token_stats", "target_full": "target_token_stats"}

    @classmethod
    def check(cls, params):
        super().check(params)
        one_of(params, "model", cls.MODELS)
        checkpoint_index(params)
        if params["model"] == "target_full" and params["checkpoint"] != -1:
            raise ValueError("checkpoint indexes the proxy's checkpoints; model target_full has one model "
                             f"(leave checkpoint at -1, got {params['checkpoint']!r})")

    @classmethod
    def feature_for(cls, params):
        return cls.MODELS[params["model"]]

    @classmethod
    def required(cls, params):
        return (cls.feature_for(params),)

    @classmethod
    def feature_spec(cls, feature, params):
        return {"checkpoint": params["checkpoint"]} if feature == "proxy_token_stats" else {}

    def select(self, ctx, scores, n, seed):
        selection = super().select(ctx, scores, n, seed)
        selection.details["model"] = ctx.params["model"]
        return selection
