"""Per-item results: one row per evaluation item and per quantity its benchmark's metrics are computed from, so any
statistic (a bootstrap interval, a paired test) can be recomputed without re-running a model.

Long format, `<eval>.items.csv` beside each evaluation's rows: dataset, method, ratio, seed, benchmark, item (the
item's id), metric, value. Values of a metric that is a mean over items are on the metric's scale (percent: the
benchmark's number is the mean of its item rows); a metric that is not such a mean gets the indicators it is
computed from instead (POPE's F1: predicted_yes and label_yes, 0 or 1). Import-light (no torch).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from selectbench.io import atomic_file

ITEM_COLUMNS = ("dataset", "method", "ratio", "seed", "benchmark", "item", "metric", "value")


def item_rows(key: dict[str, Any], benchmark: str, ids: list, scores: dict[str, list[float]]) -> list[dict]:
    """Rows for one benchmark: key (dataset, method, ratio, seed), the items' ids, per metric one value per item."""
    rows = []
    for metric, values in scores.items():
        if len(values) != len(ids):
            raise ValueError(f"{benchmark}: {len(values)} {metric} values for {len(ids)} items")
        rows += [{**key, "benchmark": benchmark, "item": item, "metric": metric, "value": round(float(v), 6)}
                 for item, v in zip(ids, values)]
    return rows


def write_items(rows: list[dict], path: Path) -> None:
    with atomic_file(Path(path)) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ITEM_COLUMNS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in ITEM_COLUMNS} for r in rows)

