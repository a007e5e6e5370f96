"""Results as pandas DataFrames, for users who build their own figures and statistics:

    from selectbench.report import load_results, load_items
    rows = load_results("results")     # every dataset's long table: dataset, method, ratio, seed, benchmark, ...
    items = load_items("results")      # every evaluation's per-item scores (selectbench.evaluation.items)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from selectbench.evaluation.evaluators import COLUMNS
from selectbench.evaluation.items import ITEM_COLUMNS

_TYPES = {"ratio": float, "seed": int, "value": float}


def read_long(files: list[Path], columns: tuple[str, ...], what: str, where: Path | str,
              optional: tuple[str, ...] = (), optional_text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Long-format CSV files as one typed DataFrame of `columns` (each required; a file without one is named) and of
    the optional ones the files have: numbers (NaN where a row has no value, never 0) and text."""
    if not files:
        raise FileNotFoundError(f"{where}: no {what} found")
    frames = [pd.read_csv(f, dtype={"item": str, "protocol": str}, keep_default_na=False) for f in files]
    for f, frame in zip(files, frames):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{f}: not a {what} file (no {missing})")
    frame = pd.concat(frames, ignore_index=True)
    kept = [*columns, *(c for c in (*optional, *optional_text) if c in frame.columns)]
    frame = frame[kept].astype(_TYPES)
    for c in optional:
        if c in frame.columns:
            frame[c] = pd.to_numeric(frame[c].replace("", None), errors="coerce")
    return frame


# tables made from the long ones (comparisons, published side by side, costs, the cross-dataset overview)
DERIVED_SUFFIXES = ("_comparisons", "_published", "_costs")


def _derived(path: Path) -> bool:
    return path.stem == "overview" or path.stem.endswith(DERIVED_SUFFIXES)


def load_results(path: str | Path = "results") -> pd.DataFrame:
    """The long-format rows of a results folder's tables (tables/*.csv), or of one such CSV file: COLUMNS, and each
    row's ci_low / ci_high (NaN where per-item scores could not recompute it)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(f for f in (path / "tables").glob("*.csv") if not _derived(f))
    return read_long(files, COLUMNS, "long-format table (tables/<dataset>.csv)", path, optional=("ci_low", "ci_high"))


def load_items(path: str | Path = "results") -> pd.DataFrame:
    """The per-item rows (ITEM_COLUMNS) of every evaluation under a results folder (a per-task evaluation's parts,
    r<ratio>_s<seed>.<benchmark>.items.csv, included), or of one items file."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*/eval/*/*.items.csv"))
    return read_long(files, ITEM_COLUMNS, "per-item results (<dataset>/eval/<method>/r<ratio>_s<seed>.items.csv)", path)
