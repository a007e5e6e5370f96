import csv

import pytest

from selectbench.report.plots import plot_relative
from selectbench.report.tables import read_published, read_rows, summarise, to_latex, to_markdown, write_long

BENCH = ["pope", "gqa"]
PRIMARY = {"pope": "f1", "gqa": "exact_match"}


def _rows(method, ratio, seed, pope, gqa):
    return [{"dataset": "d", "method": method, "ratio": ratio, "seed": seed, "benchmark": b, "metric": PRIMARY[b],
             "value": v} for b, v in (("pope", pope), ("gqa", gqa))] + [
        {"dataset": "d", "method": method, "ratio": ratio, "seed": seed, "benchmark": "pope", "metric": "yes_ratio",
         "value": 50.0}]


def test_relative_performance_is_mean_of_ratios_to_full():
    rows = _rows("full", 1.0, 0, 80, 40) + _rows("full", 1.0, 1, 80, 60) \
        + _rows("random", 0.1, 0, 40, 25) + _rows("random", 0.1, 1, 60, 25)
    summary = summarise(rows, "full", BENCH)
    full, rnd = summary
    assert full["method"] == "full" and full["relative"][0] == pytest.approx(100.0)
    # seed 0: (40/80 + 25/50)/2 = 50%; seed 1: (60/80 + 25/50)/2 = 62.5%
    assert rnd["relative"][0] == pytest.approx(56.25)
    assert rnd["relative"][1] == pytest.approx(8.8388, abs=1e-3)
    assert rnd["benchmarks"]["pope"][0] == 50.0
    md = to_markdown(summary, BENCH, "d", {("random", 0.1): 93.5})
    assert "| random | 0.1 | 2 | 50.0 ± 14.1 | 25.0 ± 0.0 | 56.2 ± 8.8 | 93.5 |" in md
    assert "\\pm" in to_latex(summary, BENCH, "d")


def test_zero_reference_gives_missing_not_zero(tmp_path):
    rows = _rows("full", 1.0, 0, 80, 0) + _rows("random", 0.1, 0, 40, 0)
    summary = summarise(rows, "full", BENCH)
    assert summary[1]["relative"] is None
    md = to_markdown(summary, BENCH, "d")
    assert "n/a" in md and "full data scored 0 on gqa" in md
    paths = plot_relative(summary, "full", "d", tmp_path / "plot")
    assert all(p.stat().st_size > 0 for p in paths)


def test_missing_reference_or_benchmark_is_an_error():
    with pytest.raises(ValueError, match="reference method"):
        summarise(_rows("random", 0.1, 0, 40, 25), "full", BENCH)
    rows = _rows("full", 1.0, 0, 80, 40) + _rows("random", 0.1, 0, 40, 25)[:1]
    with pytest.raises(ValueError, match="no exact_match"):
        summarise(rows, "full", BENCH)


def test_long_table_roundtrip_and_published(tmp_path):
    rows = _rows("full", 1.0, 0, 80, 40)
    write_long(rows, tmp_path / "t.csv")
    assert read_rows([tmp_path / "t.csv"]).loc[0, "value"] == 40.0
    with open(tmp_path / "t.csv") as fh:
        assert next(csv.reader(fh)) == ["dataset", "method", "ratio", "seed", "benchmark", "metric", "value", "protocol",
                                        "ci_low", "ci_high"]
    from tests.conftest import ROOT
    published = read_published(ROOT / "reference" / "published.csv", "llava665k")
    assert published[("xmas", 0.1)] == 95.4


def test_published_reference_file_is_well_formed():
    from tests.conftest import ROOT
    with open(ROOT / "reference" / "published.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(None not in r and r["dataset"] in {"llava665k", "visionflan"} for r in rows)
    assert all(0 < float(r["value"]) for r in rows)


def test_benchmark_the_reference_did_not_learn_is_left_out_of_relative_and_named():
    def accuracy(method, ratio, value):
        return {"dataset": "d", "method": method, "ratio": ratio, "seed": 0, "benchmark": "pope",
                "metric": "accuracy", "value": value}

    rows = _rows("full", 1.0, 0, 20, 40) + _rows("random", 0.1, 0, 64, 20) \
        + [accuracy("full", 1.0, 54.5), accuracy("random", 0.1, 50.0)]
    with_pope = summarise(rows, "full", BENCH)[1]["relative"][0]
    assert with_pope == pytest.approx((320 + 50) / 2)  # the unlearned POPE column inflates Rel. %
    summary = summarise(rows, "full", BENCH, chance_margin=10)
    assert summary[1]["relative"][0] == pytest.approx(50.0)  # gqa only
    md = to_markdown(summary, BENCH, "d")
    assert "leaves out" in md and "pope: full data accuracy 54.5 is within 10 points of chance (50)" in md
    assert "did not learn" in to_latex(summary, BENCH, "d")
    # a learned benchmark is kept
    rows[-2]["value"] = 85.0
    assert summarise(rows, "full", BENCH, chance_margin=10)[1]["relative"][0] == pytest.approx(with_pope)


def test_task_aware_rows_are_marked_with_a_footnote():
    rows = _rows("full", 1.0, 0, 80, 40) + _rows("random", 0.1, 0, 40, 25) \
        + _rows("gradient__target-validation", 0.1, 0, 60, 30)
    summary = summarise(rows, "full", BENCH)
    md = to_markdown(summary, BENCH, "d", task_aware={"gradient__target-validation"})
    assert "| gradient__target-validation † | 0.1 |" in md and "| random | 0.1 |" in md
    assert "† task-aware: uses evaluation-task validation examples" in md
    tex = to_latex(summary, BENCH, "d", task_aware=["gradient__target-validation"])
    assert "gradient\\_\\_target-validation$^\\dagger$ & 0.1" in tex and "random & 0.1" in tex
    assert "$^\\dagger$task-aware: uses evaluation-task validation examples" in tex
    for text in (to_markdown(summary, BENCH, "d"), to_latex(summary, BENCH, "d")):  # nothing task-aware
        assert "†" not in text and "dagger" not in text and "task-aware" not in text


def test_plot_bars_are_the_table_intervals():
    from selectbench.report.plots import _error_bars

    with_ci = {"relative": (60.0, None), "ci": {"relative": (55.0, 66.0)}}
    seeds_only = {"relative": (50.0, 2.0), "ci": None}
    undefined = {"relative": (40.0, None), "ci": {"relative": "undefined"}}
    assert _error_bars([with_ci, seeds_only, undefined]) == [[5.0, 2.0, 0.0], [6.0, 2.0, 0.0]]
