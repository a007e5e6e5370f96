"""Datasets side by side, as the papers show LLaVA-665k and Vision-Flan together: one row per (method, ratio), one
Rel. % column per dataset (with its interval), and a plot with one panel per dataset on a shared y axis.

Reads the summaries the report job writes beside each dataset's table (results/tables/<dataset>.summary.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from selectbench.io import atomic_file, atomic_write_text
from selectbench.report.plots import plt, save_figure



def read_summaries(paths: list[Path]) -> dict[str, list[dict]]:
    """{dataset: summary entries} from the report job's <dataset>.summary.json files."""
    out = {}
    for path in paths:
        record = json.loads(Path(path).read_text())
        out[record["dataset"]] = record["summary"]
    return out


def overview_frame(summaries: dict[str, list[dict]]) -> pd.DataFrame:
    """Long rows: dataset, method, ratio, seeds, relative (mean over seeds), its std over seeds, ci_low, ci_high
    (NaN where undefined or not computed, never 0)."""
    rows = []
    for dataset, summary in summaries.items():
        for e in summary:
            rel = e.get("relative")
            ci = (e.get("ci") or {}).get("relative")
            interval = ci if isinstance(ci, (list, tuple)) else (None, None)
            rows.append({"dataset": dataset, "method": e["method"], "ratio": float(e["ratio"]),
                         "seeds": len(e["seeds"]), "relative": None if rel is None else rel[0],
                         "relative_std": None if rel is None else rel[1],
                         "ci_low": interval[0], "ci_high": interval[1]})
    columns = ["dataset", "method", "ratio", "seeds", "relative", "relative_std", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns).astype({"relative": float, "relative_std": float, "ci_low": float,
                                                       "ci_high": float})


def _cell(row) -> str:
    if pd.isna(row.relative):
        return "n/a"
    if not pd.isna(row.ci_low):
        return f"{row.relative:.1f} [{row.ci_low:.1f}, {row.ci_high:.1f}]"
    return f"{row.relative:.1f}" + ("" if pd.isna(row.relative_std) else f" ± {row.relative_std:.1f}")


def to_markdown(frame: pd.DataFrame, reference: str) -> str:
    datasets = list(dict.fromkeys(frame["dataset"]))
    frame = frame.assign(cell=[_cell(r) for r in frame.itertuples()])
    wide = frame.pivot_table(index=["method", "ratio"], columns="dataset", values="cell", aggfunc="first")
    wide = wide.reindex(columns=datasets)
    order = sorted(wide.index, key=lambda k: (k[0] != reference, k))
    lines = ["### Rel. % by dataset", "", "| method | ratio | " + " | ".join(datasets) + " |",
             "|---|---|" + "---|" * len(datasets)]
    for method, ratio in order:
        cells = [wide.loc[(method, ratio), d] if isinstance(wide.loc[(method, ratio), d], str) else "—"
                 for d in datasets]
        lines.append(f"| {method} | {ratio:g} | " + " | ".join(cells) + " |")
    lines += ["", "Rel. % = mean over each dataset's benchmarks of 100 × subset / that dataset's full-data model "
                  "[95% bootstrap interval over evaluation items and seeds]; — : not run on that dataset. Each "
                  "dataset's own table (results/tables/<dataset>.md) has the benchmarks, protocols and marks."]
    return "\n".join(lines) + "\n"


def plot_overview(frame: pd.DataFrame, reference: str, out_stem: Path) -> list[Path]:
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.8), sharey=True, squeeze=False)
    methods = sorted(set(frame["method"]) - {reference})
    colours = {m: f"C{k % 10}" for k, m in enumerate(methods)}
    for ax, dataset in zip(axes[0], datasets):
        part = frame[(frame["dataset"] == dataset) & frame["relative"].notna()]
        for method in methods:
            line = part[part["method"] == method].sort_values("ratio")
            if line.empty:
                continue
            low = (line["relative"] - line["ci_low"]).fillna(0)
            high = (line["ci_high"] - line["relative"]).fillna(0)
            ax.errorbar(100 * line["ratio"], line["relative"], yerr=[low, high], marker="o", capsize=3,
                        color=colours[method], label=method)
        ax.axhline(100, color="gray", linewidth=1, linestyle="--", label=f"{reference} (100%)")
        ax.set_title(dataset)
        ax.set_xlabel("subset size (% of the pool)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative performance (% of full data)")
    axes[0][-1].legend(fontsize=8)
    return save_figure(fig, out_stem)


def write_overview(summary_files: list[Path], reference: str, tables: Path, plots: Path) -> pd.DataFrame:
    frame = overview_frame(read_summaries(summary_files))
    Path(tables).mkdir(parents=True, exist_ok=True)
    with atomic_file(Path(tables) / "overview.csv") as tmp:
        frame.to_csv(tmp, index=False)
    atomic_write_text(Path(tables) / "overview.md", to_markdown(frame, reference))
    plot_overview(frame, reference, Path(plots) / "overview")
    return frame
