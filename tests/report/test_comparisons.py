"""Paired comparisons against random: a planted effect is flagged, and under the null (identical distributions)
the table's marks, Holm-corrected, are false positives at most 5% of the time."""

import numpy as np

from selectbench.report.intervals import ItemTable, Replicates, holm, paired_differences
from selectbench.report.tables import LOSS, WIN, attach_comparisons, summarise, to_markdown

BENCHES = ("gqa", "textvqa_val", "vqav2_val")  # lmms-eval tasks, all scored by exact match


def _runs(rng, accuracy: dict[str, float], n_items=200, seeds=(0,)):
    """Per-item 0/100 scores of each method on each benchmark (the same items for all), and their mean rows."""
    items, rows = [], []
    for method, p in accuracy.items():
        ratio = 1.0 if method == "full" else 0.1
        for seed in seeds:
            for bench in BENCHES:
                values = 100.0 * (rng.random(n_items) < p)
                items += [{"method": method, "ratio": ratio, "seed": seed, "benchmark": bench,
                           "metric": "exact_match", "item": f"q{i}", "value": v} for i, v in enumerate(values)]
                rows.append({"dataset": "d", "method": method, "ratio": ratio, "seed": seed, "benchmark": bench,
                             "metric": "exact_match", "value": float(values.mean()), "protocol": "lmms-eval"})
    return items, rows


def _table(items, rows):
    return summarise(rows, "full", list(BENCHES))


def test_holm_steps_down():
    assert holm({"a": 0.001, "b": 0.02, "c": 0.04}) == {"a", "b", "c"}
    assert holm({"a": 0.001, "b": 0.03, "c": 0.04}) == {"a"}
    assert holm({"a": 0.2}) == set()


def test_a_planted_effect_is_flagged_and_its_direction_is_right():
    rng = np.random.default_rng(0)
    items, rows = _runs(rng, {"full": 0.8, "random": 0.5, "better": 0.7, "worse": 0.3}, n_items=400)
    summary = _table(items, rows)
    attach_comparisons(summary, items, "random", reps=400, seed=1)
    marks = {e["method"]: e["marks"] for e in summary}
    assert marks["better"] == {b: WIN for b in BENCHES} and marks["worse"] == {b: LOSS for b in BENCHES}
    assert marks["full"] == {}  # full data sits at another ratio: not compared
    md = to_markdown(summary, list(BENCHES), "d")
    assert f"{WIN} / {LOSS}: better / worse than random" in md and "Smallest difference" in md


def test_null_replicates_rarely_mark_anything():
    """Under the null every mark is a false positive. Per comparison they stay far below 5%; per table (any mark
    at all) Holm holds the family-wise rate at its nominal 5%, which 200 replicates measure to about ±1.5 points."""
    rng = np.random.default_rng(7)
    tables_marked = marks = comparisons = 0
    for replicate in range(200):
        items, _ = _runs(rng, {"random": 0.5, "a": 0.5, "b": 0.5}, n_items=100)
        boot = Replicates(ItemTable(items), reps=1000, seed=replicate)
        pairs = [(("a", 0.1, [0]), ("random", 0.1, [0])), (("b", 0.1, [0]), ("random", 0.1, [0]))]
        results = paired_differences(boot, pairs, {b: "exact_match" for b in BENCHES})
        tests = {(k, b): r["p"] for k, per in results.items() for b, r in per.items()}
        rejected = holm(tests)
        marks, comparisons = marks + len(rejected), comparisons + len(tests)
        tables_marked += bool(rejected)
    assert marks / comparisons <= 0.05
    assert tables_marked / 200 <= 0.05 + 2 * (0.05 * 0.95 / 200) ** 0.5
