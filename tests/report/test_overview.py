"""Datasets side by side: one Rel. % column per dataset, intervals kept, a method missing from a dataset shown as
missing (never 0), one plot panel per dataset."""

import json

from selectbench.report.overview import overview_frame, read_summaries, to_markdown, write_overview


def _entry(method, ratio, rel, ci=None, seeds=(0,)):
    return {"method": method, "ratio": ratio, "seeds": list(seeds), "relative": rel,
            "ci": {"relative": ci, "benchmarks": {}} if ci is not None else None}


SUMMARIES = {
    "llava665k": [_entry("full", 1.0, (100.0, None), (100.0, 100.0)), _entry("random", 0.1, (93.5, None), (91.0, 96.0)),
                  _entry("xmas", 0.1, (95.4, 0.5), (93.0, 97.5), seeds=(0, 1))],
    "visionflan": [_entry("full", 1.0, (100.0, None)), _entry("random", 0.1, (96.2, None), "undefined"),
                   _entry("coincide", 0.1, None)],
}


def test_one_column_per_dataset_and_missing_is_not_zero():
    frame = overview_frame(SUMMARIES)
    assert set(frame["dataset"]) == {"llava665k", "visionflan"}
    md = to_markdown(frame, "full")
    assert "| method | ratio | llava665k | visionflan |" in md
    lines = md.splitlines()
    assert lines[4].startswith("| full | 1 |")  # the reference first
    assert "| xmas | 0.1 | 95.4 [93.0, 97.5] | — |" in md  # not run on Vision-Flan
    assert "| random | 0.1 | 93.5 [91.0, 96.0] | 96.2 |" in md  # an undefined interval is left out, not invented
    assert "| coincide | 0.1 | — | n/a |" in md
    assert frame.loc[frame["method"] == "coincide", "relative"].isna().all()


def test_written_from_the_report_summaries(tmp_path):
    paths = []
    for dataset, summary in SUMMARIES.items():
        paths.append(tmp_path / f"{dataset}.summary.json")
        paths[-1].write_text(json.dumps({"dataset": dataset, "summary": summary}))
    assert list(read_summaries(paths)) == ["llava665k", "visionflan"]
    write_overview(paths, "full", tmp_path / "tables", tmp_path / "plots")
    for name in ("tables/overview.md", "tables/overview.csv", "plots/overview.png", "plots/overview.pdf"):
        assert (tmp_path / name).stat().st_size > 0, name
