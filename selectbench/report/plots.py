"""Relative performance vs subset ratio, one line per method (PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from selectbench.io import atomic_file


def plot_relative(summary: list[dict], reference: str, dataset: str, out_stem: Path,
                  published: dict | None = None) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    methods = sorted({e["method"] for e in summary if e["method"] != reference})
    for k, method in enumerate(methods):
        entries = sorted((e for e in summary if e["method"] == method and e["relative"]), key=lambda e: e["ratio"])
        x = [100 * e["ratio"] for e in entries]
        y = [e["relative"][0] for e in entries]
        line = ax.errorbar(x, y, yerr=_error_bars(entries), marker="o", capsize=3, label=method)
        if published:
            pub = sorted((100 * r, v) for (m, r), v in published.items() if m == method)
            if pub:
                ax.plot(*zip(*pub), linestyle=":", marker="x", color=line[0].get_color(),
                        label=f"{method} (published)")
    missing = {e["relative_missing"] for e in summary if e.get("relative_missing")}
    if missing:
        ax.text(0.5, 0.5, "relative performance undefined:\n" + "\n".join(sorted(missing)),
                transform=ax.transAxes, ha="center", va="center", fontsize=8)
    ax.axhline(100, color="gray", linewidth=1, linestyle="--", label=f"{reference} (100%)")
    ax.set_xlabel("subset size (% of the pool)")
    ax.set_ylabel("relative performance (% of full data)")
    bars = "95% intervals" if any((e.get("ci") or {}).get("relative") for e in summary) else "std over seeds"
    ax.set_title(f"{dataset}: relative performance vs subset size (bars: {bars})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_stem)


def _error_bars(entries: list[dict]) -> list[list[float]]:
    """Below / above each point: its 95% interval where the table has one, else ± its std over seeds (0 for one
    seed), as the table's cells show them."""
    low, high = [], []
    for e in entries:
        ci = (e.get("ci") or {}).get("relative")
        mean, std = e["relative"]
        if isinstance(ci, (list, tuple)):
            low.append(max(0.0, mean - ci[0]))
            high.append(max(0.0, ci[1] - mean))
        else:
            low.append(std or 0.0)
            high.append(std or 0.0)
    return [low, high]


def save_figure(fig, out_stem: Path) -> list[Path]:
    """Write a figure as <out_stem>.png and .pdf, each published atomically, and close it."""
    fig.tight_layout()
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")]
    for path in paths:
        with atomic_file(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=150, format=path.suffix[1:])
    plt.close(fig)
    return paths
