"""Scatter/gather of per-example feature extraction over N shard jobs.

Batches are planned once for the whole pool (examples sorted by conversation length, then cut into fixed-size
batches) and whole batches are dealt to shards round-robin. Every example therefore lands in the same batch
whatever N is, so the gathered arrays are bit-for-bit identical for any shard count.
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from selectbench.io import atomic_file, atomic_write_json

log = logging.getLogger(__name__)


def conversation_length(record: dict) -> int:
    return sum(len(turn.get("value", "")) for turn in record.get("conversations", []))


def plan_batches(pool: list[dict], rows: Iterable[int], batch_size: int) -> list[np.ndarray]:
    """Rows grouped into batches of similar length (less padding); deterministic from the pool alone."""
    rows = np.asarray(list(rows), dtype=np.int64)
    lengths = np.array([conversation_length(pool[r]) for r in rows])
    order = rows[np.lexsort((rows, lengths))]
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def shard_batches(batches: list[np.ndarray], shard: int, n_shards: int) -> list[np.ndarray]:
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} outside 0..{n_shards - 1}")
    return batches[shard::n_shards]


def parts_dir(out: Path) -> Path:
    """Where a shard job keeps its finished parts until it publishes `out`."""
    return Path(out).with_name(Path(out).name + ".parts")


def claim_parts(work_dir: Path, fingerprint: str) -> None:
    """Keep the parts a killed job left in work_dir only if that job had this fingerprint (the same inputs,
    settings and code: selectbench.features.job_fingerprint); otherwise discard them, saying so, so a resumed job
    never mixes parts of two configurations. Then record the fingerprint for the parts to come."""
    stamp = work_dir / "job.json"
    if work_dir.exists():
        if _stamp(stamp, "fingerprint") != fingerprint:
            log.warning("discarding %s: its parts were computed from other inputs, settings or code", work_dir)
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, {"fingerprint": fingerprint})


def _stamp(path: Path, key: str) -> str | None:
    """A stamp's value, or None where there is none to trust: no file, or one that does not parse (a disk fault, a
    hand edit): what it stamps is then redone, rather than a job that cannot start until someone deletes it."""
    try:
        return json.loads(path.read_text()).get(key)
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None


def run_parts(parts: list[str], compute: Callable[[str], dict[str, np.ndarray]], work_dir: Path
              ) -> dict[str, dict[str, np.ndarray]]:
    """compute(part) for each part (e.g. one checkpoint), saving each result under work_dir as it completes, so
    that a job killed half-way resumes from the first missing part."""
    work_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for index, part in enumerate(parts):
        path = work_dir / f"part{index:04d}.npz"
        stamp = work_dir / f"part{index:04d}.json"
        if path.exists() and _stamp(stamp, "part") == part:
            results[part] = load_npz(path)
            continue
        arrays = compute(part)
        save_npz(path, arrays)
        atomic_write_json(stamp, {"part": part})
        results[part] = arrays
    return results


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write: the file appears complete or not at all."""
    with atomic_file(Path(path), suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_npz(path: Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (all, or `keys`), read now; ValueError naming the file for one that is truncated,
    corrupt, of another kind or without an asked-for array. np.load's own errors (BadZipFile, "contains pickled
    data", EOFError, KeyError) name no file, and a feature file is read by jobs far from the one that wrote it."""
    try:
        with np.load(path) as z:
            wanted = list(z.files if keys is None else keys)
            missing = [k for k in wanted if k not in z.files]
            if missing:
                raise KeyError(f"no array {missing} (has {sorted(z.files)})")
            return {k: z[k] for k in wanted}
    except FileNotFoundError:
        raise
    except KeyError as err:
        raise ValueError(f"{path}: {err.args[0]}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({type(err).__name__}: {err}); "
                         "rerun the job that wrote it") from None


def gather(shard_files: list[Path], pool_size: int, out: Path) -> dict[str, np.ndarray]:
    """Merge shard outputs (each with a 'rows' array and row-aligned arrays) into pool-sized arrays; rows no
    shard covered are NaN (float) or -1 (integer). Arrays named 'meta_*' are copied from the first shard."""
    merged: dict[str, np.ndarray] = {}
    covered = np.zeros(pool_size, dtype=bool)
    for path in shard_files:
        arrays = load_npz(path)
        if "rows" not in arrays:
            raise ValueError(f"{path}: no 'rows' array: not a feature shard")
        rows = arrays.pop("rows")
        if len(rows) and (rows.min() < 0 or rows.max() >= pool_size):
            raise ValueError(f"{path}: rows outside the pool of {pool_size} records (a shard of another pool?)")
        if covered[rows].any():
            raise ValueError(f"{path}: rows already covered by another shard")
        covered[rows] = True
        for key, value in arrays.items():
            if key.startswith("meta_"):
                merged.setdefault(key, value)
                continue
            if value.ndim and len(value) != len(rows):
                raise ValueError(f"{path}: array {key!r} has {len(value)} rows for {len(rows)} row indices")
            if key not in merged:
                fill = np.nan if np.issubdtype(value.dtype, np.floating) else -1
                merged[key] = np.full((pool_size, *value.shape[1:]), fill, dtype=value.dtype)
            merged[key][rows] = value
    merged["covered"] = covered
    save_npz(out, merged)
    return merged


def clear(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)
