"""Results as pandas DataFrames, for users who build their own figures and statistics:

    from selectbench.report import load_results, load_items
    rows = load_results("results")     # every dataset's long table: dataset, method, ratio, seed, benchmark, ...
    items = load_items("results")      # every evaluation's per-item scores (selectbench.evaluation.items)
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from selectbench.evaluation.evaluators import COLUMNS
from selectbench.evaluation.items import ITEM_COLUMNS

_TYPES = {"ratio": float, "seed": int, "value": float}
_FILLED = ("dataset", "method", "ratio", "seed", "benchmark", "item", "metric", "value")  # never empty in a row


def read_long(files: list[Path], columns: tuple[str, ...], what: str, where: Path | str,
              optional: tuple[str, ...] = (), optional_text: tuple[str, ...] = ()) -> pd.DataFrame:
    """Long-format CSV files as one typed DataFrame of `columns` (each required; a file without one is named) and of
    the optional ones the files have: numbers (NaN where a row has no value, never 0) and text."""
    if not files:
        raise FileNotFoundError(f"{where}: no {what} found")
    frames = [read_long_file(Path(f), columns, what) for f in files]
    frame = pd.concat(frames, ignore_index=True)
    kept = [*columns, *(c for c in (*optional, *optional_text) if c in frame.columns)]
    frame = frame[kept]
    for c in optional:
        if c in frame.columns:
            frame[c] = pd.to_numeric(frame[c].replace("", None), errors="coerce")
    return frame


def read_long_file(path: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """One long-format CSV with its required columns present, filled and typed; ValueError naming the file and the
    row otherwise (a truncated or hand-edited file, a file of another kind)."""
    try:
        frame = pd.read_csv(path, dtype={"item": str, "protocol": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable {what} file ({err})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a {what} file (no {missing})")
    for column in (c for c in columns if c in _FILLED):
        empty = frame.index[frame[column].astype(str).str.strip() == ""]
        if len(empty):
            raise ValueError(f"{path}: row {empty[0] + 2} has no {column} (a truncated or edited file?)")
    for column, kind in _TYPES.items():
        if column in frame.columns:
            try:
                frame[column] = frame[column].astype(kind)
            except ValueError as err:
                raise ValueError(f"{path}: column {column}: {err}") from None
    return frame


# metrics that count (samples, empty answers, judge failures: selectbench.evaluation.lmms); every other metric is a
# score in percent, on 0–100
COUNT_METRICS = ("samples", "empty_answers", "judge_failures")
# an evaluation's rows file: results/<dataset>/eval/<method>/r<ratio>_s<seed>[.<benchmark>].csv
EVAL_FILE = re.compile(r"r(?P<ratio>[0-9.]+)_s(?P<seed>[0-9]+)(\.(?P<benchmark>[^/]+))?\.csv")


def check_evaluation_rows(frame: pd.DataFrame, path: Path) -> None:
    """An evaluation file's rows are what its place says (dataset, method, ratio, seed and, for a per-task part, the
    benchmark), each once, with values on their scale; ValueError naming the file and the row otherwise. A file
    without rows is refused too: every evaluation writes a row per benchmark, and an empty one would leave its
    model out of the table without a word."""
    if frame.empty:
        raise ValueError(f"{path}: no rows (a truncated evaluation file?); rerun its evaluate job")

    def fail(row: int, detail: str) -> None:
        raise ValueError(f"{path}: row {row + 2}: {detail} (evaluation rows are checked where the report reads them)")

    named = EVAL_FILE.fullmatch(path.name)
    if named and len(path.parts) >= 4 and path.parts[-3] == "eval":
        expected = {"dataset": path.parts[-4], "method": path.parts[-2], "ratio": float(named["ratio"]),
                    "seed": int(named["seed"])}
        if named["benchmark"]:
            expected["benchmark"] = named["benchmark"]
        for column, value in expected.items():
            wrong = frame.index[frame[column] != value]
            if len(wrong):
                found = frame.at[wrong[0], column]
                fail(wrong[0], f"{column} {found.item() if hasattr(found, 'item') else found!r} in the file of "
                               f"{column} {value!r}")
    twice = frame.index[frame.duplicated(["dataset", "method", "ratio", "seed", "benchmark", "metric"])]
    if len(twice):
        fail(twice[0], f"{frame.at[twice[0], 'benchmark']} {frame.at[twice[0], 'metric']} given twice")
    counts = frame.metric.isin(COUNT_METRICS)
    bad = frame.index[~counts & ~frame.value.between(0, 100)]
    if len(bad):
        fail(bad[0], f"{frame.at[bad[0], 'benchmark']} {frame.at[bad[0], 'metric']} = {frame.at[bad[0], 'value']}, "
                     "outside 0–100 percent")
    bad = frame.index[counts & ~(frame.value >= 0)]
    if len(bad):
        fail(bad[0], f"{frame.at[bad[0], 'metric']} = {frame.at[bad[0], 'value']} is not a count")


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
