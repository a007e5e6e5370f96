"""What an evaluator (selectbench.registry, keyed by `evaluation.backend`) is given and what it writes: job.out
holds COLUMNS rows (percent), job.predictions the per-item outputs, job.items each item's scores
(selectbench.evaluation.items). Import-light (no torch): the report reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COLUMNS = ("dataset", "method", "ratio", "seed", "benchmark", "metric", "value", "protocol")

@dataclass(frozen=True)
class EvalJob:
    model: Path                     # a saved model folder (save_model's layout)
    data: Path                      # the prepared data folder
    benchmarks: list[str]
    template: dict[str, Any]        # the target's template block
    key: dict[str, Any]             # dataset, method, ratio, seed: the first columns of every row
    out: Path                       # rows CSV
    predictions: Path               # per-item outputs JSON
    batch_size: int = 64
    threads: int = 1
    settings: dict[str, Any] = field(default_factory=dict)  # the backend's own block (evaluation.lmms_eval)
    items: Path | None = None       # per-item scores CSV
