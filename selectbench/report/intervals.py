"""95% bootstrap intervals and paired comparisons from the per-item scores (selectbench.evaluation.items), seeded so
the same inputs give the same intervals.

Replicates draws the evaluation items with replacement, one draw per benchmark and replicate shared by every run
(all runs are scored on the same items), and recomputes every run's metric on it. A draw is a vector of counts
(how often each item was drawn), so one matrix product gives the replicates of every run at once: a paper-sized
grid (tens of models, a quarter of a million items each) is a few seconds, not a loop per cell.

A cell (method, ratio, benchmark) also resamples its seeds where it has several: each replicate draws the seeds
with replacement and averages the metric over them. Rel. % is recomputed from the subset's and the full-data
model's replicates together (the same item draw), so its interval carries the uncertainty of both. A difference
between two cells is paired the same way. Percentile intervals.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

Interval = tuple[float, float]
Key = tuple[str, float, int, str, str]  # method, ratio, seed, benchmark, metric
UNDEFINED = "undefined"  # an interval that cannot be computed (Rel. % over a draw where full data scored 0)
F1_INDICATORS = ("predicted_yes", "label_yes")  # POPE's F1 is not a mean over items: it is recomputed from these
F1_METRICS = ("f1", "pope_f1_score")  # the built-in scorer's and lmms-eval's name for it
_KEY_COLUMNS = ["method", "ratio", "seed", "benchmark", "metric"]
log = logging.getLogger(__name__)


class ItemTable:
    """Per-item values by (method, ratio, seed, benchmark, metric), aligned by item id across runs: a run whose
    items differ from its benchmark's (the first run read) is left out, so nothing is compared on other items."""

    def __init__(self, rows: Iterable[dict] | pd.DataFrame | None = None):
        self.items: dict[str, pd.Index] = {}
        self.values: dict[Key, np.ndarray] = {}
        if rows is not None:
            self.add(rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows)))

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> "ItemTable":
        """Read items files one at a time (a paper-sized grid never sits in memory as text), each with its columns
        filled and typed and each item once; ValueError naming the file and the row otherwise (a truncated or
        edited file would otherwise drop its run from every interval without a word)."""
        from selectbench.evaluation.items import ITEM_COLUMNS
        from selectbench.report.results import read_long_file

        table = cls()
        for path in paths:
            frame = read_long_file(Path(path), ITEM_COLUMNS, "per-item results")
            twice = frame.index[frame.duplicated([*_KEY_COLUMNS, "item"])]
            if len(twice):
                first = frame.loc[twice[0]]
                raise ValueError(f"{path}: row {twice[0] + 2}: {first.benchmark} {first.metric} item {first['item']} "
                                 "twice")
            left_out = table.add(frame)
            if left_out:  # its rows and cells get no interval and no paired comparison: say which and why
                log.warning("%s: %s scored on other items than the first file of the benchmark; left out of the "
                            "intervals and comparisons", path, ", ".join(f"{k[3]} {k[4]}" for k in left_out))
        return table

    def add(self, frame: pd.DataFrame) -> list[Key]:
        """Add a frame's runs; returns the keys left out because their items differ from their benchmark's."""
        left_out: list[Key] = []
        if frame.empty:
            return left_out
        frame = frame.astype({"ratio": float, "seed": int, "value": float, "item": str})
        for (method, ratio, seed, bench, metric), group in frame.groupby(_KEY_COLUMNS, sort=False):
            values = pd.Series(group["value"].to_numpy(), index=group["item"].to_numpy())
            order = self.items.setdefault(bench, pd.Index(np.sort(values.index.unique().to_numpy())))
            key = (method, float(ratio), int(seed), bench, metric)
            aligned = values.reindex(order) if len(values) == len(order) and values.index.is_unique else None
            if aligned is None or aligned.isna().any():
                left_out.append(key)
                continue
            self.values[key] = aligned.to_numpy(dtype=float)
        return left_out

    def has(self, method: str, ratio: float, seeds: list[int], bench: str, metric: str) -> bool:
        needed = F1_INDICATORS if metric in F1_METRICS else (metric,)
        return all((method, ratio, s, bench, m) in self.values for s in seeds for m in needed)

    def point(self, method: str, ratio: float, seed: int, bench: str, metric: str) -> float:
        """The metric on all items, in percent."""
        if metric in F1_METRICS:
            pred = self.values[(method, ratio, seed, bench, "predicted_yes")]
            gold = self.values[(method, ratio, seed, bench, "label_yes")]
            return _f1(np.array([(pred * gold).sum()]), np.array([pred.sum() + gold.sum()]))[0]
        return float(self.values[(method, ratio, seed, bench, metric)].mean())


def _f1(both: np.ndarray, total: np.ndarray) -> np.ndarray:
    return np.where(total > 0, 200 * both / np.maximum(total, 1e-12), 0.0)


class Replicates:
    """Bootstrap replicates of every run's metrics, computed once per benchmark and shared by intervals and
    comparisons: replicate r of run k is its metric on item draw r of its benchmark."""

    def __init__(self, table: ItemTable, reps: int = 1000, seed: int = 0, chunk: int = 50):
        self.table, self.reps, self.seed, self.chunk = table, reps, seed, chunk
        self._draws: dict[str, dict[tuple, np.ndarray]] = {}

    def n_items(self, bench: str) -> int:
        return len(self.table.items[bench])

    def rng(self, salt: int) -> np.random.Generator:
        """A generator for what a caller resamples on top of the items (seeds), independent of call order."""
        return np.random.default_rng([self.seed, salt])

    def stat(self, method: str, ratio: float, seed: int, bench: str, metric: str) -> np.ndarray:
        draws = self._benchmark(bench)
        if metric in F1_METRICS:
            run = (method, ratio, seed, bench)
            return _f1(draws[(*run, "f1:both")], draws[(*run, "predicted_yes")] + draws[(*run, "label_yes")])
        return draws[(method, ratio, seed, bench, metric)]

    def _benchmark(self, bench: str) -> dict[tuple, np.ndarray]:
        if bench in self._draws:
            return self._draws[bench]
        keys = [k for k in self.table.values if k[3] == bench]
        columns = [self.table.values[k] for k in keys]
        for k in keys:  # F1 needs the count of items both predicted and labelled yes
            if k[4] == "predicted_yes" and (*k[:4], "label_yes") in self.table.values:
                keys.append((*k[:4], "f1:both"))
                columns.append(self.table.values[k] * self.table.values[(*k[:4], "label_yes")])
        matrix = np.stack(columns, axis=1)  # items × runs
        n = matrix.shape[0]
        rng = np.random.default_rng([self.seed, _stable_id(bench)])
        out = []
        for start in range(0, self.reps, self.chunk):
            c = min(self.chunk, self.reps - start)
            # 32-bit draws are half the work; a chunk's offsets stay below 2**31 (chunk × items)
            kind = np.int32 if c * n < 2**31 else np.int64
            drawn = rng.integers(0, n, size=(c, n), dtype=kind) + (np.arange(c, dtype=kind) * n)[:, None]
            counts = np.bincount(drawn.ravel(), minlength=c * n).reshape(c, n).astype(float)
            out.append(counts @ matrix)
        sums = np.concatenate(out)  # replicates × runs: each run's sum over the drawn items
        self._draws[bench] = {k: sums[:, j] / (1 if k[4] in ("f1:both", *F1_INDICATORS) else n)
                              for j, k in enumerate(keys)}
        return self._draws[bench]


def _stable_id(text: str) -> int:
    """A stable integer per benchmark name (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode())


def _percentile(samples: np.ndarray, level: float) -> Interval:
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _over_seeds(boot: Replicates, method: str, ratio: float, seeds: list[int], bench: str, metric: str,
                pick: np.ndarray) -> np.ndarray:
    """Each replicate's metric averaged over its resampled seeds (pick: replicates × len(seeds) seed indices)."""
    per_seed = np.stack([boot.stat(method, ratio, s, bench, metric) for s in seeds])  # seeds × replicates
    return per_seed[pick, np.arange(boot.reps)[:, None]].mean(1)


def cell_intervals(boot: Replicates, cells: list[tuple[str, float, list[int]]], reference: tuple[float, list[int]],
                   reference_method: str, primary: dict[str, str], relative_over: list[str],
                   level: float = 0.95) -> dict[tuple[str, float], dict]:
    """For each (method, ratio, seeds): {"benchmarks": {bench: interval or None}, "relative": interval, UNDEFINED
    or None}."""
    table, rng = boot.table, boot.rng(1)
    ref_ratio, ref_seeds = reference
    out = {}
    for method, ratio, seeds in cells:
        have = {b: b in table.items and table.has(method, ratio, seeds, b, primary[b]) for b in primary}
        have_rel = bool(relative_over) and all(
            have[b] and table.has(reference_method, ref_ratio, ref_seeds, b, primary[b]) for b in relative_over)
        pick = rng.integers(0, len(seeds), size=(boot.reps, len(seeds)))
        pick_ref = rng.integers(0, len(ref_seeds), size=(boot.reps, len(ref_seeds)))
        benchmarks, rel = {}, np.zeros(boot.reps)
        for bench, metric in primary.items():
            if not have[bench]:
                benchmarks[bench] = None
                continue
            value = _over_seeds(boot, method, ratio, seeds, bench, metric, pick)
            benchmarks[bench] = _percentile(value, level)
            if have_rel and bench in relative_over:
                full = _over_seeds(boot, reference_method, ref_ratio, ref_seeds, bench, metric, pick_ref)
                rel += np.where(full > 0, 100 * value / np.where(full > 0, full, 1), np.nan)
        relative = None
        if have_rel:
            rel /= len(relative_over)
            # a draw where the full-data model scores 0 on a benchmark leaves Rel. % undefined: no interval then
            relative = _percentile(rel, level) if np.isfinite(rel).all() else UNDEFINED
        out[(method, ratio)] = {"benchmarks": benchmarks, "relative": relative}
    return out


def _p_value(draws: np.ndarray, n_items: int) -> float:
    """Two-sided p-value of "the difference is 0" from its bootstrap draws: the bootstrap standard error in a
    Student t with n_items − 1 degrees of freedom (smooth, so a Holm correction over many comparisons can reach it
    with a thousand replicates; t rather than normal tails keeps small evaluation sets from over-marking)."""
    from scipy.stats import t

    # the bootstrap spreads a mean as the sample variance with ddof 0 does: scale it to the unbiased one
    sd = float(np.std(draws, ddof=1)) * (n_items / max(1, n_items - 1)) ** 0.5
    if sd == 0:
        return 1.0 if float(np.mean(draws)) == 0 else 0.0
    return float(2 * t.sf(abs(float(np.mean(draws))) / sd, df=max(1, n_items - 1)))


RELATIVE = "Rel. %"  # the key of a pair's Rel. % difference beside its benchmarks


def paired_differences(boot: Replicates, pairs: list[tuple[tuple[str, float, list[int]], tuple[str, float, list[int]]]],
                       primary: dict[str, str], level: float = 0.95,
                       relative: tuple[str, float, list[int], list[str]] | None = None
                       ) -> dict[tuple[str, float, str, float], dict]:
    """For each pair (a, b) of cells scored on the same items: per benchmark, the difference a − b of the primary
    metric (mean over seeds) with its paired bootstrap interval and p-value (the same item draws for both, seeds
    resampled for each). With relative = (full-data method, ratio, seeds, benchmarks Rel. % is taken over), also
    the difference of Rel. % under the key RELATIVE, the full-data model drawn on the same items as both."""
    table, rng = boot.table, boot.rng(2)
    out = {}
    for (ma, ra, sa), (mb, rb, sb) in pairs:
        result = {}
        pick_a = rng.integers(0, len(sa), size=(boot.reps, len(sa)))
        pick_b = rng.integers(0, len(sb), size=(boot.reps, len(sb)))
        draws = {}
        for bench, metric in primary.items():
            if bench not in table.items or not (table.has(ma, ra, sa, bench, metric)
                                                and table.has(mb, rb, sb, bench, metric)):
                continue
            a = _over_seeds(boot, ma, ra, sa, bench, metric, pick_a)
            b = _over_seeds(boot, mb, rb, sb, bench, metric, pick_b)
            draws[bench] = (a, b)
            point = (np.mean([table.point(ma, ra, s, bench, metric) for s in sa])
                     - np.mean([table.point(mb, rb, s, bench, metric) for s in sb]))
            result[bench] = {"difference": float(point), "interval": _percentile(a - b, level),
                             "p": _p_value(a - b, boot.n_items(bench))}
        if relative is not None:
            diff = _relative_difference(boot, (ma, ra, sa), (mb, rb, sb), draws, primary, relative, rng, level)
            if diff is not None:
                result[RELATIVE] = diff
        out[(ma, ra, mb, rb)] = result
    return out


def _relative_difference(boot: Replicates, a: tuple[str, float, list[int]], b: tuple[str, float, list[int]],
                         draws: dict[str, tuple[np.ndarray, np.ndarray]], primary: dict[str, str],
                         relative: tuple[str, float, list[int], list[str]], rng: np.random.Generator,
                         level: float) -> dict | None:
    """Rel. %(a) − Rel. %(b) = mean over benchmarks of 100 × (a − b) / full, on the same draws; None where a
    benchmark lacks per-item scores or a draw of the full-data model is 0 (Rel. % undefined there)."""
    method, ratio, seeds, over = relative
    table = boot.table
    if not over or any(bench not in draws or not table.has(method, ratio, seeds, bench, primary[bench])
                       for bench in over):
        return None
    pick = rng.integers(0, len(seeds), size=(boot.reps, len(seeds)))
    diff, point = np.zeros(boot.reps), 0.0
    for bench in over:
        full = _over_seeds(boot, method, ratio, seeds, bench, primary[bench], pick)
        if (full <= 0).any():
            return None
        diff += 100 * (draws[bench][0] - draws[bench][1]) / full
        point += 100 * (np.mean([table.point(a[0], a[1], s, bench, primary[bench]) for s in a[2]])
                        - np.mean([table.point(b[0], b[1], s, bench, primary[bench]) for s in b[2]])) / np.mean(
            [table.point(method, ratio, s, bench, primary[bench]) for s in seeds])
    diff /= len(over)
    # the smallest evaluation set sets the degrees of freedom: the conservative reading of a mean over benchmarks
    return {"difference": float(point / len(over)), "interval": _percentile(diff, level),
            "p": _p_value(diff, min(boot.n_items(bench) for bench in over))}


def holm(p_values: dict, alpha: float = 0.05) -> set:
    """The keys whose p-value is rejected by Holm's step-down procedure at family-wise level alpha."""
    ordered = sorted(p_values.items(), key=lambda kv: kv[1])
    rejected = set()
    for rank, (key, p) in enumerate(ordered):
        if p > alpha / (len(ordered) - rank):
            break
        rejected.add(key)
    return rejected


def row_intervals(boot: Replicates, rows: pd.DataFrame | Iterable[dict], level: float = 0.95
                  ) -> dict[Key, Interval]:
    """For each long-format row (one model, one benchmark, one metric) that per-item scores can recompute (a mean
    metric, or F1 from its indicators): the 95% bootstrap interval over its items, keyed like ItemTable."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    out = {}
    for r in records:
        key = (r["method"], float(r["ratio"]), int(r["seed"]), r["benchmark"], r["metric"])
        if key not in out and key[3] in boot.table.items and boot.table.has(key[0], key[1], [key[2]], *key[3:]):
            out[key] = _percentile(boot.stat(*key), level)
    return out

