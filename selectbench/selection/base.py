"""The method plug-in interface. A method is one file in methods/ that defines a subclass of Method.

Scoring (the expensive part) runs once per dataset and method instance; selection for a ratio and seed then
reads the stored scores and takes seconds. A method names the shared artifacts it needs (see ARTIFACTS) and
the DAG wires them; adding a method never requires touching rules/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from selectbench.features import FEATURES
from selectbench.selection.checks import one_of

# Shared artifacts a method may require, produced once per dataset by the rules (rules/common.smk maps each
# name to its file). Features (selectbench.features) are artifacts too, computed once per spec.
# target_full: the target fine-tuned on the whole pool (the full-data reference run), for methods that score with it;
# self_filter_scorer: Self-Filter's score net, trained jointly with the target on the whole pool.
ARTIFACTS = ("pool", "proxy_checkpoints", "clip_model", "gradient_warmup", "target_full", "self_filter_scorer",
             *FEATURES)


@dataclass
class Context:
    """What a method sees: the dataset's pool and the paths of the artifacts it asked for."""

    dataset: str
    pool: list[dict]
    image_root: Path
    artifacts: dict[str, Path] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    @property
    def size(self) -> int:
        return len(self.pool)

    def has_image(self) -> np.ndarray:
        return np.array(["image" in r for r in self.pool])


class Method:
    """Base class of selection methods.

    name: the method's name in the config and in result tables.
    requires: artifacts (from ARTIFACTS, or features the method declares) the scoring step may need; required()
        says which of them one parameter setting needs (default: all).
    features: per-example features the method brings (name → selectbench.features.Feature); the DAG shards,
        gathers and caches them like the built-in ones.
    parameters: defaults; the config may override them, and a list value expands to a grid of instances.
    is_reference: the full-data reference (ratio 1 only).
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    features: ClassVar[dict[str, Any]] = {}
    parameters: ClassVar[dict[str, Any]] = {}
    is_reference: ClassVar[bool] = False

    @classmethod
    def check(cls, params: dict[str, Any]) -> None:
        """Raise ValueError for a bad parameter value; called when the DAG is planned, before anything runs."""

    @classmethod
    def required(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """The artifacts scoring with these parameters reads, a subset of `requires` (e.g. perplexity's statistic
        from the proxy or from the full-data target): what the DAG builds for the instance and hands to score()."""
        return cls.requires

    @classmethod
    def task_aware(cls, params: dict[str, Any]) -> bool:
        """Whether the instance selects with evaluation-task data (e.g. benchmark validation examples); tables
        mark such rows, since they are not task-agnostic selections. Default: no."""
        return False

    @classmethod
    def feature_spec(cls, feature: str, params: dict[str, Any]) -> dict[str, Any]:
        """Settings of a required feature (see selectbench.features) for these parameters; instances that
        return the same spec share one extraction. Default: the feature's defaults."""
        return {}

    def score(self, ctx: Context) -> dict[str, np.ndarray]:
        """Expensive, once per dataset: arrays saved to disk and handed to select(). Default: nothing."""
        return {}

    def select(self, ctx: Context, scores: dict[str, np.ndarray], n: int, seed: int) -> "np.ndarray | Selection":
        """Row indices of exactly n distinct pool examples (optionally with details for the sidecar)."""
        raise NotImplementedError


@dataclass
class Selection:
    """Rows plus JSON-serialisable details recorded in the subset's sidecar (e.g. per-cluster counts)."""

    rows: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)


def subset_size(ratio: float, pool_size: int) -> int:
    """n = ratio × N rounded half up, at least 1 (so 10% of 665,298 is 66,530)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return max(1, min(pool_size, math.floor(ratio * pool_size + 0.5)))


BANDS = ("low", "middle", "high")


def check_band(params: dict[str, Any]) -> None:
    one_of(params, "band", BANDS)


def band_indices(scores: np.ndarray, n: int, band: str) -> np.ndarray:
    """The n rows with the lowest, middle or highest scores (stable tie order by row). Rows whose score is
    NaN (nothing to score, e.g. no answer token) are ranked out of every band and used only if n exceeds the
    scored rows."""
    if band not in BANDS:
        raise ValueError(f"band must be low, middle or high, got {band!r}")
    scores = np.asarray(scores, dtype=np.float64)
    scored = np.flatnonzero(~np.isnan(scores))
    order = scored[np.argsort(scores[scored], kind="stable")]
    unscored = np.flatnonzero(np.isnan(scores))
    if n > len(order):
        return np.concatenate([order, unscored[:n - len(order)]])
    if band == "low":
        return order[:n]
    if band == "high":
        return order[len(order) - n:]
    start = (len(order) - n) // 2
    return order[start:start + n]
