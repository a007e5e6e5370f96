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


def test_relative_and_requested_pairs_are_compared_in_the_same_family():
    from selectbench.report.intervals import RELATIVE
    from selectbench.report.tables import comparisons_frame, comparisons_markdown, parse_pair

    rng = np.random.default_rng(3)
    items, rows = _runs(rng, {"full": 0.8, "random": 0.5, "better": 0.7, "same": 0.5}, n_items=400)
    summary = _table(items, rows)
    attach_comparisons(summary, items, "random", reps=400, seed=1, reference="full",
                       requested=[parse_pair("better@0.1 vs same@0.1")])
    marks = {e["method"]: e["marks"] for e in summary}
    assert marks["better"][RELATIVE] == WIN and RELATIVE not in marks["same"]
    frame = comparisons_frame(summary)
    requested = frame[frame["requested"]]
    assert set(requested["benchmark"]) == {*BENCHES, RELATIVE} and requested["significant"].all()
    rel = frame[(frame["a"] == "better") & (frame["b"] == "random") & (frame["benchmark"] == RELATIVE)].iloc[0]
    assert rel.ci_low < 100 * (0.7 - 0.5) / 0.8 < rel.ci_high  # Rel. % points: 25 planted
    assert summary[0]["comparisons"]["tests"] == len(frame) == 3 * 4  # 2 vs random + 1 requested, 3 benches + Rel.
    assert "better@0.1 | same@0.1 (requested)" in comparisons_markdown(summary, "d")
    md = to_markdown(summary, list(BENCHES), "d")
    assert md.split("\n")[[i for i, line in enumerate(md.split("\n")) if "| better |" in line][0]].endswith(f"{WIN} |")


def test_a_requested_pair_must_name_cells_of_the_table():
    import pytest

    from selectbench.report.tables import parse_pair

    items, rows = _runs(np.random.default_rng(0), {"full": 0.8, "random": 0.5}, n_items=20)
    summary = _table(items, rows)
    with pytest.raises(ValueError, match="no results for xmas at ratio 0.1"):
        attach_comparisons(summary, items, "random", reps=100, requested=[("xmas", 0.1, "random", 0.1)])
    with pytest.raises(ValueError, match="not 'method@ratio vs method@ratio'"):
        parse_pair("xmas vs random")
