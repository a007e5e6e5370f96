"""Bootstrap intervals from per-item scores: they cover the truth at about their level, are seeded, recompute
POPE's F1 from its indicators, pair the subset with the full-data model, and reach the tables."""

import numpy as np

from selectbench.report.intervals import ItemTable, Replicates, cell_intervals
from selectbench.report.tables import attach_intervals, summarise, to_latex, to_markdown


def _items(method, ratio, seed, values, bench="gqa", metric="exact_match"):
    return [{"method": method, "ratio": ratio, "seed": seed, "benchmark": bench, "metric": metric, "item": f"q{i}",
             "value": v} for i, v in enumerate(values)]


def test_intervals_cover_the_true_mean_at_about_their_level():
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(200):
        table = ItemTable(_items("m", 0.1, 0, 100.0 * (rng.random(120) < 0.7)))
        boot = Replicates(table, reps=400, seed=int(rng.integers(1 << 30)))
        low, high = cell_intervals(boot, [("m", 0.1, [0])], (0.1, [0]), "m", {"gqa": "exact_match"},
                                   [])[("m", 0.1)]["benchmarks"]["gqa"]
        covered += low <= 70.0 <= high
    assert covered / 200 >= 0.9


def test_the_same_inputs_give_the_same_intervals():
    table = ItemTable(_items("m", 0.1, 0, (100 * np.random.default_rng(5).random(100)).tolist()))
    run = lambda seed: cell_intervals(Replicates(table, seed=seed), [("m", 0.1, [0])], (0.1, [0]), "m",  # noqa: E731
                                      {"gqa": "exact_match"}, [])
    assert run(3) == run(3) and run(3) != run(4)


def test_pope_f1_is_recomputed_from_its_indicators_and_seeds_are_resampled():
    rng = np.random.default_rng(1)
    rows = []
    for seed in (0, 1, 2):
        gold = (rng.random(200) < 0.5).astype(float)
        pred = np.where(rng.random(200) < 0.9, gold, 1 - gold)
        rows += _items("m", 0.2, seed, pred.tolist(), "pope", "predicted_yes")
        rows += _items("m", 0.2, seed, gold.tolist(), "pope", "label_yes")
    ci = cell_intervals(Replicates(ItemTable(rows), reps=500), [("m", 0.2, [0, 1, 2])], (0.2, [0, 1, 2]), "m",
                        {"pope": "f1"}, [])[("m", 0.2)]["benchmarks"]["pope"]
    assert 80 < ci[0] < 90 < ci[1] < 96


def test_relative_is_paired_with_the_full_data_model():
    values = [100.0, 0.0, 100.0, 100.0] * 25
    rows = _items("full", 1.0, 0, values) + _items("same", 0.1, 0, values)
    rows += _items("worse", 0.1, 0, [v if i % 4 == 3 else 0.0 for i, v in enumerate(values)])  # 25 of 75
    ci = cell_intervals(Replicates(ItemTable(rows), reps=300), [("same", 0.1, [0]), ("worse", 0.1, [0])],
                        (1.0, [0]), "full", {"gqa": "exact_match"}, ["gqa"])
    assert ci[("same", 0.1)]["relative"] == (100.0, 100.0)  # the same answers: no uncertainty left when paired
    low, high = ci[("worse", 0.1)]["relative"]
    assert low < 33.4 < high < 100


def test_tables_show_intervals_and_say_what_they_are():
    rows = [{"dataset": "d", "method": m, "ratio": r, "seed": 0, "benchmark": "gqa", "metric": "exact_match",
             "value": v, "protocol": ""} for m, r, v in (("full", 1.0, 75.0), ("random", 0.1, 50.0))]
    items = _items("full", 1.0, 0, [100.0, 100.0, 100.0, 0.0] * 10) + _items("random", 0.1, 0, [100.0, 0.0] * 20)
    summary = summarise(rows, "full", ["gqa"])
    attach_intervals(summary, items, "full", ["gqa"], reps=200, seed=0)
    md, tex = to_markdown(summary, ["gqa"], "d"), to_latex(summary, ["gqa"], "d")
    assert "| random | 0.1 | 1 | 50.0 [" in md and "95% bootstrap interval" in md
    assert "50.0\\,{\\scriptsize[" in tex
    assert summary[1]["ci"]["relative"][0] < 66.7 < summary[1]["ci"]["relative"][1]


def test_an_undefined_relative_interval_is_marked_not_hidden():
    rows = [{"dataset": "d", "method": m, "ratio": r, "seed": 0, "benchmark": "gqa", "metric": "exact_match",
             "value": v, "protocol": ""} for m, r, v in (("full", 1.0, 10.0), ("random", 0.1, 10.0))]
    items = _items("full", 1.0, 0, [100.0] + [0.0] * 9) + _items("random", 0.1, 0, [100.0] + [0.0] * 9)
    summary = summarise(rows, "full", ["gqa"])
    attach_intervals(summary, items, "full", ["gqa"], reps=200, seed=0)
    md = to_markdown(summary, ["gqa"], "d")
    assert "10.0 [n/a]" not in md.split("\n")[4] and "100.0 [n/a]" in md and "Rel. % is undefined" in md
