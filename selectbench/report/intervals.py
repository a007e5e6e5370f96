"""95% bootstrap intervals from the per-item scores (selectbench.evaluation.items), seeded so the same inputs give
the same intervals.

A cell (method, ratio, benchmark) resamples the evaluation items and, where it has several, the seeds: each
replicate draws the items with replacement (one draw per benchmark, shared by every seed and by the full-data
model, since all are scored on the same items) and the seeds with replacement, and recomputes the metric on the
draw, averaged over the drawn seeds. Rel. % is recomputed the same way from the subset's and the full-data model's
draws together (paired), so its interval carries the uncertainty of both. Percentile intervals.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

Interval = tuple[float, float]
UNDEFINED = "undefined"  # an interval that cannot be computed (Rel. % over a draw where full data scored 0)
F1_INDICATORS = ("predicted_yes", "label_yes")  # POPE's F1 is not a mean over items: it is recomputed from these


class ItemTable:
    """Per-item values by (method, ratio, seed, benchmark, metric), aligned by item id across runs."""

    def __init__(self, rows: Iterable[dict]):
        cells: dict[tuple, dict[str, float]] = defaultdict(dict)
        for r in rows:
            key = (r["method"], float(r["ratio"]), int(r["seed"]), r["benchmark"], r["metric"])
            cells[key][str(r["item"])] = float(r["value"])
        self.items: dict[str, list[str]] = {}
        for (_, _, _, bench, _), values in cells.items():
            self.items.setdefault(bench, sorted(values))
        self.values = {k: np.array([v[i] for i in self.items[k[3]]]) for k, v in cells.items()
                       if sorted(v) == self.items[k[3]]}

    def has(self, method: str, ratio: float, seeds: list[int], bench: str, metric: str) -> bool:
        needed = F1_INDICATORS if metric == "f1" else (metric,)
        return all((method, ratio, s, bench, m) in self.values for s in seeds for m in needed)

    def stat(self, method: str, ratio: float, seed: int, bench: str, metric: str, idx: np.ndarray) -> np.ndarray:
        """The metric on each row of item indices idx (replicates × items), in percent."""
        if metric == "f1":
            pred = self.values[(method, ratio, seed, bench, "predicted_yes")][idx]
            gold = self.values[(method, ratio, seed, bench, "label_yes")][idx]
            denom = pred.sum(1) + gold.sum(1)
            return np.where(denom > 0, 200 * (pred * gold).sum(1) / np.maximum(denom, 1), 0.0)
        return self.values[(method, ratio, seed, bench, metric)][idx].mean(1)


def _percentile(samples: np.ndarray, level: float) -> Interval:
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def cell_intervals(table: ItemTable, cells: list[tuple[str, float, list[int]]], reference: tuple[float, list[int]],
                   reference_method: str, primary: dict[str, str], relative_over: list[str], reps: int = 1000,
                   seed: int = 0, level: float = 0.95, chunk: int = 50) -> dict[tuple[str, float], dict]:
    """For each (method, ratio, seeds): {"benchmarks": {bench: interval or None}, "relative": interval or None}."""
    rng = np.random.default_rng(seed)
    ref_ratio, ref_seeds = reference
    out = {}
    for method, ratio, seeds in cells:
        draws: dict[str, list[np.ndarray]] = defaultdict(list)
        rel_draws: list[np.ndarray] = []
        have = {b: table.has(method, ratio, seeds, b, primary[b]) for b in primary}
        have_rel = bool(relative_over) and all(
            have[b] and table.has(reference_method, ref_ratio, ref_seeds, b, primary[b]) for b in relative_over)
        for start in range(0, reps, chunk):
            n = min(chunk, reps - start)
            pick = rng.integers(0, len(seeds), size=(n, len(seeds)))
            pick_ref = rng.integers(0, len(ref_seeds), size=(n, len(ref_seeds)))
            rel = np.zeros(n)
            for bench, metric in primary.items():
                if not have[bench]:
                    continue
                idx = rng.integers(0, len(table.items[bench]), size=(n, len(table.items[bench])))
                rows = np.arange(n)
                per_seed = np.stack([table.stat(method, ratio, s, bench, metric, idx) for s in seeds])
                value = per_seed[pick, rows[:, None]].mean(1)
                draws[bench].append(value)
                if have_rel and bench in relative_over:
                    full_seed = np.stack([table.stat(reference_method, ref_ratio, s, bench, metric, idx)
                                          for s in ref_seeds])
                    full = full_seed[pick_ref, rows[:, None]].mean(1)
                    rel += np.where(full > 0, 100 * value / np.where(full > 0, full, 1), np.nan)
            if have_rel:
                rel_draws.append(rel / len(relative_over))
        relative = None
        if have_rel:
            rel_all = np.concatenate(rel_draws)
            # a draw where the full-data model scores 0 on a benchmark leaves Rel. % undefined: no interval then
            relative = _percentile(rel_all, level) if np.isfinite(rel_all).all() else UNDEFINED
        out[(method, ratio)] = {
            "benchmarks": {b: _percentile(np.concatenate(draws[b]), level) if have[b] else None for b in primary},
            "relative": relative}
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


def paired_differences(table: ItemTable, pairs: list[tuple[tuple[str, float, list[int]], tuple[str, float, list[int]]]],
                       primary: dict[str, str], reps: int = 1000, seed: int = 0, level: float = 0.95,
                       chunk: int = 50) -> dict[tuple[str, float, str, float], dict[str, dict]]:
    """For each pair (a, b) of cells scored on the same items: per benchmark, the difference a − b of the primary
    metric with its paired bootstrap interval and p-value (the same item draw for both, seeds resampled for each)."""
    rng = np.random.default_rng(seed)
    out = {}
    for (ma, ra, sa), (mb, rb, sb) in pairs:
        result = {}
        for bench, metric in primary.items():
            if not (table.has(ma, ra, sa, bench, metric) and table.has(mb, rb, sb, bench, metric)):
                continue
            n_items = len(table.items[bench])
            draws = []
            for start in range(0, reps, chunk):
                n = min(chunk, reps - start)
                idx = rng.integers(0, n_items, size=(n, n_items))
                rows = np.arange(n)[:, None]
                a = np.stack([table.stat(ma, ra, s, bench, metric, idx) for s in sa])
                b = np.stack([table.stat(mb, rb, s, bench, metric, idx) for s in sb])
                pick_a = rng.integers(0, len(sa), size=(n, len(sa)))
                pick_b = rng.integers(0, len(sb), size=(n, len(sb)))
                draws.append(a[pick_a, rows].mean(1) - b[pick_b, rows].mean(1))
            d = np.concatenate(draws)
            point = float(np.mean([table.stat(ma, ra, s, bench, metric, np.arange(n_items)[None])[0] for s in sa])
                          - np.mean([table.stat(mb, rb, s, bench, metric, np.arange(n_items)[None])[0] for s in sb]))
            result[bench] = {"difference": point, "interval": _percentile(d, level), "p": _p_value(d, n_items)}
        out[(ma, ra, mb, rb)] = result
    return out


def holm(p_values: dict, alpha: float = 0.05) -> set:
    """The keys whose p-value is rejected by Holm's step-down procedure at family-wise level alpha."""
    ordered = sorted(p_values.items(), key=lambda kv: kv[1])
    rejected = set()
    for rank, (key, p) in enumerate(ordered):
        if p > alpha / (len(ordered) - rank):
            break
        rejected.add(key)
    return rejected


def row_intervals(table: ItemTable, rows: Iterable[dict], reps: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict[tuple, Interval]:
    """For each long-format row (one model, one benchmark, one metric) that per-item scores can recompute (a mean
    metric, or F1 from its indicators): the 95% bootstrap interval over its items, keyed like ItemTable."""
    rng = np.random.default_rng(seed)
    out = {}
    for r in rows:
        key = (r["method"], float(r["ratio"]), int(r["seed"]), r["benchmark"], r["metric"])
        if key in out or not table.has(key[0], key[1], [key[2]], key[3], key[4]):
            continue
        n_items = len(table.items[key[3]])
        draws = [table.stat(*key[:4], key[4], rng.integers(0, n_items, size=(min(50, reps - k), n_items)))
                 for k in range(0, reps, 50)]
        out[key] = _percentile(np.concatenate(draws), level)
    return out
