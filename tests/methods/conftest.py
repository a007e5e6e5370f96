"""Helpers of the methods' end-to-end tests: a feature of the tiny proxy in one shard, and a method's select step
checked for exact size and for being the same when run again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from selectbench.features import ShardJob
from selectbench.features.sharding import gather
from selectbench.selection.run import select

METHODS = str(Path(__file__).resolve().parents[2] / "methods")


def one_shard_feature(extract: Callable, data, proxy_cfg: dict, listing: Path, folder: Path, name: str) -> Path:
    """The feature `extract` computes over the proxy checkpoints of `listing`, in one shard, gathered."""
    extract(ShardJob(data, {"proxy_checkpoints": listing}, {}, proxy_cfg, 0, 1, 8, folder / f"{name}_s0.npz",
                     device="cpu"))
    gather([folder / f"{name}_s0.npz"], len(data.pool), folder / f"{name}.npz")
    return folder / f"{name}.npz"


def select_twice(data, instance, scores: Path, ratio: float, folder: Path, again_seed: int,
                 why: str) -> tuple[list[int], dict]:
    """The select step at seed 0: exactly round(ratio × N) distinct rows; run again at again_seed, the same rows
    (why: what makes them the same)."""
    out = folder / f"r{ratio}.json"
    meta = select(METHODS, data, "digits", instance, scores, ratio, 0, out)
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == len(set(rows)) == meta["size"] == round(ratio * len(data.pool))
    select(METHODS, data, "digits", instance, scores, ratio, again_seed, folder / "again.json")
    assert json.loads((folder / "again.json").read_text())["rows"] == rows, why
    return rows, meta
