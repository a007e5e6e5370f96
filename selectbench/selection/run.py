"""The score and select steps: scores once per (dataset, method instance), subsets per (ratio, seed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from selectbench.data.datadir import DataDir
from selectbench.features.sharding import load_npz, save_npz
from selectbench.io import atomic_write_json
from selectbench.selection.base import Context, Selection, subset_size
from selectbench.selection.registry import Instance, discover
from selectbench.versions import provenance


def _context(data: DataDir, dataset: str, instance: Instance, artifacts: dict[str, str], threads: int) -> Context:
    return Context(dataset=dataset, pool=data.pool, image_root=data.image_root,
                   artifacts={k: Path(v) for k, v in artifacts.items()}, params=instance.param_dict,
                   threads=threads)


def _method(methods_dirs: str | Sequence[str], instance: Instance):
    return discover(methods_dirs)[instance.method]()


def score(methods_dir: str | Sequence[str], data: DataDir, dataset: str, instance: Instance,
          artifacts: dict[str, str], out: Path, threads: int = 1) -> None:
    """Run the method's expensive scoring once and store the arrays (npz) with a metadata sidecar."""
    ctx = _context(data, dataset, instance, artifacts, threads)
    start = time.time()
    arrays = _method(methods_dir, instance).score(ctx)
    elapsed = time.time() - start
    for key, value in arrays.items():
        if len(value) != ctx.size:
            raise ValueError(f"{instance.method}: score array {key!r} has {len(value)} rows, pool has {ctx.size}")
    out = Path(out)
    save_npz(out, arrays)
    _write_json(out.with_suffix(".meta.json"), {
        "method": instance.method, "instance": instance.label, "parameters": instance.param_dict,
        "dataset": dataset, "pool_sha256": data.pool_hash(), "score_seconds": elapsed,
        "arrays": sorted(arrays), **provenance()})


def select(methods_dir: str | Sequence[str], data: DataDir, dataset: str, instance: Instance, scores_path: Path,
           ratio: float, seed: int, out: Path) -> dict:
    """Pick exactly round(ratio × N) distinct rows; write {ids, rows} and a sidecar with full provenance."""
    ctx = _context(data, dataset, instance, {}, 1)
    arrays = load_npz(scores_path)
    for key, value in arrays.items():  # scores of another pool would select the wrong rows without an error
        if len(value) != ctx.size:
            raise ValueError(f"{scores_path}: score array {key!r} has {len(value)} rows, {data.path} has {ctx.size}: "
                             "scores of another pool")
    method = _method(methods_dir, instance)
    n = ctx.size if method.is_reference else subset_size(ratio, ctx.size)
    start = time.time()
    selected = method.select(ctx, arrays, n, seed)
    details = selected.details if isinstance(selected, Selection) else {}
    rows = np.asarray(selected.rows if isinstance(selected, Selection) else selected, dtype=np.int64)
    elapsed = time.time() - start
    if len(rows) != n or len(np.unique(rows)) != n:
        raise ValueError(f"{instance.label}: selected {len(rows)} rows ({len(np.unique(rows))} distinct), "
                         f"expected exactly {n}")
    if rows.min() < 0 or rows.max() >= ctx.size:
        raise ValueError(f"{instance.label}: selected rows outside the pool of {ctx.size}")
    rows = np.sort(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"method": instance.method, "instance": instance.label, "parameters": instance.param_dict,
            "ratio": ratio, "seed": seed, "size": n, "pool_size": ctx.size, "dataset": dataset,
            "pool_sha256": data.pool_hash(), "select_seconds": elapsed,
            "text_only": int(sum("image" not in data.pool[r] for r in rows)), "details": details,
            **provenance()}
    _write_json(out.with_suffix(".meta.json"), meta)
    _write_json(out, {"ids": [data.pool[r]["id"] for r in rows], "rows": rows.tolist()})
    return meta


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_json(Path(path), obj, indent=1 if isinstance(obj, dict) and "ids" not in obj else None)
