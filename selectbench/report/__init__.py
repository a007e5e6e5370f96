"""Tables and plots from the evaluation rows; load_results / load_items give them to users as DataFrames."""

from __future__ import annotations


def load_results(path="results"):
    """Every dataset's long-format rows as a DataFrame (selectbench.report.results.load_results)."""
    from selectbench.report.results import load_results as load

    return load(path)


def load_items(path="results"):
    """Every evaluation's per-item scores as a DataFrame (selectbench.report.results.load_items)."""
    from selectbench.report.results import load_items as load

    return load(path)
