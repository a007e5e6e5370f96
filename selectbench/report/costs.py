"""What each method instance costs, read from the jobs' own records (Snakemake's `benchmark:` files,
results/benchmarks/<dataset>/<job>.tsv), set against the relative performance it buys.

The plan (rules/common.smk, cost_plan) names the jobs behind each instance: the shared jobs its scoring needs
(proxy base and fine-tune, CLIP, gradient warm-up, feature shards and gathers), its score step, and per ratio and
seed its select step, target training and evaluation. A shared job counts in full for every instance that needs
it: that is what someone adopting that one method pays. Selection = shared + score + select; training = the
subset's target training; select, training and evaluation are per seed (the mean over seeds; an evaluation split
into one job per benchmark is the sum of its jobs). Measured: wall
seconds and Snakemake's cpu_time on the machine that ran the DAG; GPU-hours = wall time × the GPUs the job's rule
requests (config `resources`), 0 for a CPU job. A record that is missing is NaN with the reason, never 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selectbench.io import atomic_file

# measure → column suffix: wall seconds, CPU seconds, GPU-hours
MEASURES = {"wall_s": "_s", "cpu_s": "_cpu_s", "gpu_h": "_gpu_h"}
STAGES = ("shared", "score", "select", "train", "evaluate")
JOB_COLUMNS = ["instance", "stage", "ratio", "seed", "job", "rule", "gpus", "wall_s", "cpu_s", "gpu_h",
               "max_rss_mb", "missing"]


def read_record(path: Path) -> tuple[dict[str, float], str]:
    """Wall seconds, CPU seconds and peak resident memory (MB) of one benchmark file (the mean over its rows when
    the job was repeated), and why any of them is missing ("" when none is)."""
    values = {"wall_s": np.nan, "cpu_s": np.nan, "max_rss_mb": np.nan}
    if not path.is_file():
        return values, f"no record {path}"
    try:
        frame = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
        wall = pd.to_numeric(frame["s"], errors="coerce")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, KeyError, UnicodeDecodeError) as err:
        return values, f"unreadable record {path} ({type(err).__name__})"
    if wall.empty or wall.isna().any():
        return values, f"no wall time in {path}"
    values["wall_s"] = float(wall.mean())
    for column, key in (("cpu_time", "cpu_s"), ("max_rss", "max_rss_mb")):
        if column in frame:
            series = pd.to_numeric(frame[column], errors="coerce")
            values[key] = float(series.mean()) if series.notna().all() else np.nan
    # Snakemake writes NA when the job ended before its first sample
    return values, "" if np.isfinite(values["cpu_s"]) else f"cpu_time not sampled in {path}"


def job_costs(plan_jobs: list[dict], records: Path) -> pd.DataFrame:
    """One row per planned job and instance (a shared job repeats for every instance that needs it), with its
    measured costs (JOB_COLUMNS)."""
    cache: dict[str, tuple[dict[str, float], str]] = {}
    rows = []
    for job in plan_jobs:
        name = job["job"]
        if name not in cache:
            cache[name] = read_record(Path(records) / f"{name}.tsv")
        values, reason = cache[name]
        gpus = int(job.get("gpus", 0))
        rows.append({"instance": job.get("instance"), "stage": job["stage"], "ratio": job.get("ratio"),
                     "seed": job.get("seed"), "job": name, "rule": job.get("rule", ""), "gpus": gpus, **values,
                     "gpu_h": values["wall_s"] * gpus / 3600, "missing": reason})
    frame = pd.DataFrame(rows, columns=JOB_COLUMNS)
    return frame.astype({"ratio": float, "wall_s": float, "cpu_s": float, "gpu_h": float, "max_rss_mb": float})


def _sum(jobs: pd.DataFrame, column: str) -> float:
    return float(jobs[column].sum(skipna=False))  # no job: 0; a missing record: NaN


def _per_seed(jobs: pd.DataFrame, column: str) -> float:
    """The mean over seeds of each seed's jobs summed (an evaluation is one job per benchmark with
    evaluation.jobs per_task)."""
    if not len(jobs):
        return np.nan
    return float(jobs.groupby("seed")[column].agg(lambda s: s.sum(skipna=False)).mean(skipna=False))


def cost_summary(jobs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per (instance, ratio): each stage's cost and selection, training, total (selection + training) in
    every measure, and selection / one full-data training (the reference's mean over its seeds)."""
    out = []
    own_jobs = jobs[jobs["stage"] != "common"]
    for instance, own in own_jobs.groupby("instance", sort=True):
        fixed = own[own["ratio"].isna()]
        for ratio, runs in own[own["ratio"].notna()].groupby("ratio"):
            row: dict = {"method": instance, "ratio": float(ratio), "seeds": int(runs["seed"].nunique())}
            for measure, suffix in MEASURES.items():
                shared = _sum(fixed[fixed["stage"] == "shared"], measure)
                score = _sum(fixed[fixed["stage"] == "score"], measure)
                select, train, evaluate = (_per_seed(runs[runs["stage"] == s], measure)
                                           for s in ("select", "train", "evaluate"))
                row.update({f"shared{suffix}": shared, f"score{suffix}": score, f"select{suffix}": select,
                            f"selection{suffix}": shared + score + select, f"train{suffix}": train,
                            f"total{suffix}": shared + score + select + train, f"evaluate{suffix}": evaluate})
            both = pd.concat([fixed, runs])
            row["missing"] = "; ".join(sorted({f"{j}: {r}" for j, r in zip(both["job"], both["missing"]) if r}))
            out.append(row)
    summary = pd.DataFrame(out)
    if summary.empty:
        return summary
    full = summary[summary["method"] == reference]
    for suffix in MEASURES.values():
        one_training = float(full[f"train{suffix}"].mean()) if len(full) else np.nan
        ok = np.isfinite(one_training) and one_training > 0  # no GPU job: a GPU-hour ratio is undefined, not 0
        summary[f"selection_vs_full{suffix}"] = summary[f"selection{suffix}"] / one_training if ok else np.nan
    return summary


def attach_relative(summary: pd.DataFrame, entries: list[dict]) -> pd.DataFrame:
    """Rel. % (mean, and std over seeds where there are several) of each (method, ratio), from
    selectbench.report.tables.summarise; NaN where the table has none."""
    rel = {(e["method"], float(e["ratio"])): e.get("relative") for e in entries}
    pairs = [rel.get((m, float(r))) or (np.nan, None) for m, r in zip(summary["method"], summary["ratio"])]
    summary = summary.copy()
    summary["rel"] = [float(p[0]) for p in pairs]
    summary["rel_std"] = [np.nan if p[1] is None else float(p[1]) for p in pairs]
    return summary


def uses_gpus(jobs: pd.DataFrame) -> bool:
    return bool((jobs["gpus"] > 0).any())


def _num(x: float, digits: int = 1) -> str:
    if not np.isfinite(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}f}"


def to_markdown(summary: pd.DataFrame, jobs: pd.DataFrame, dataset: str, reference: str,
                rel_notes: list[str] = ()) -> str:
    """The summary as a Markdown table, with how costs were attributed and what is missing."""
    gpu = uses_gpus(jobs)
    head = ["method", "ratio", "seeds", "shared (s)", "score (s)", "select (s)", "selection (s)", "training (s)",
            "total (s)", "total CPU (s)", "selection / full training"]
    if gpu:
        head += ["selection (GPU-h)", "training (GPU-h)", "total (GPU-h)", "selection / full training (GPU-h)"]
    head.append("Rel. %")
    lines = [f"### {dataset}: cost of selection and training", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    order = summary.assign(_ref=summary["method"] != reference).sort_values(["_ref", "method", "ratio"])
    for _, e in order.iterrows():
        cells = [e["method"], f"{e['ratio']:g}", str(e["seeds"]), _num(e["shared_s"]), _num(e["score_s"]),
                 _num(e["select_s"], 2), _num(e["selection_s"]), _num(e["train_s"]), _num(e["total_s"]),
                 _num(e["total_cpu_s"]), _num(e["selection_vs_full_s"], 3)]
        if gpu:
            cells += [_num(e["selection_gpu_h"], 2), _num(e["train_gpu_h"], 2), _num(e["total_gpu_h"], 2),
                      _num(e["selection_vs_full_gpu_h"], 3)]
        rel = "n/a" if not np.isfinite(e["rel"]) else (
            f"{e['rel']:.1f}" + ("" if not np.isfinite(e["rel_std"]) else f" ± {e['rel_std']:.1f}"))
        cells.append(rel)
        lines.append("| " + " | ".join(cells) + " |")
    common = jobs[jobs["stage"] == "common"]
    lines += ["", "Selection = the shared jobs the method's scoring needs + its score step + one select step; "
              "training = the target trained on one subset; total = selection + training; select and training are "
              "the mean over seeds. **A shared job (proxy fine-tune, CLIP, gradient warm-up, a feature's shards "
              "and gather) counts in full for every method that needs it**: what adopting that one method costs; "
              "methods run together pay it once. Evaluation is not in the total. Selection / full training "
              f"divides by one training of the full-data reference ({reference})."]
    if len(common):
        lines += ["", "Not attributed (every run, the full-data training included, needs them): "
                  + ", ".join(f"{j} {_num(s)} s" for j, s in zip(common["job"], common["wall_s"])) + "."]
    lines += ["", "Seconds: wall time on the machine that ran the DAG. CPU: Snakemake's cpu_time, its last sample "
              "(every 0.5 s for 15 s, then every 30 s), so a lower bound that can miss a job's last 30 s."
              + (" GPU-hours: wall time × the GPUs each job's rule requests (config `resources`); CPU jobs count 0."
                 if gpu else " No job requested GPUs (config `resources`), so there are no GPU-hours; with a "
                 "paper-scale config the table adds them.")]
    missing = sorted({r for r in summary["missing"] if r})
    if missing:
        lines += ["", "n/a: " + "; ".join(missing) + "."]
    if rel_notes:
        lines += ["", "Rel. % n/a: " + "; ".join(sorted(set(rel_notes))) + "."]
    return "\n".join(lines) + "\n"


def plot_costs(summary: pd.DataFrame, reference: str, dataset: str, out_stem: Path, gpu: bool) -> list[Path]:
    """Rel. % against total cost (log scale), one marker per method × ratio, the full-data training marked."""
    from selectbench.report.plots import plt, save_figure

    column, unit = ("total_gpu_h", "GPU-hours") if gpu else ("total_s", "wall seconds on this machine")
    ok = summary[np.isfinite(summary[column]) & (summary[column] > 0) & np.isfinite(summary["rel"])]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in ok[ok["method"] != reference].groupby("method", sort=True):
        points = points.sort_values("ratio")
        err = points["rel_std"].fillna(0.0)
        line = ax.errorbar(points[column], points["rel"], yerr=err, marker="o", linestyle=":", capsize=3,
                           label=method)
        for x, y, r in zip(points[column], points["rel"], points["ratio"]):
            ax.annotate(f"{100 * r:g}%", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7,
                        color=line[0].get_color())
    full = ok[ok["method"] == reference]
    if len(full):
        ax.scatter(full[column], full["rel"], marker="*", s=160, color="black", zorder=3,
                   label=f"{reference} data (reference)")
        ax.axvline(float(full[column.replace("total", "train")].mean()), color="gray", linewidth=1, linestyle="--",
                   label="one full-data training")
    left_out = sorted(set(summary["method"]) - set(ok["method"]))
    if left_out:
        ax.text(0.02, 0.02, "not plotted (cost or Rel. % n/a): " + ", ".join(left_out), transform=ax.transAxes,
                fontsize=7, va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel(f"total cost: selection + training of one subset ({unit})")
    ax.set_ylabel("relative performance (% of full data)")
    ax.set_title(f"{dataset}: relative performance vs cost")
    ax.grid(alpha=0.3, which="both")
    if len(ok):
        ax.legend(fontsize=7)
    return save_figure(fig, out_stem)


def write_costs(plan: dict, records: Path, entries: list[dict], tables: Path, plots: Path) -> pd.DataFrame:
    """results/tables/<dataset>_costs.{csv,md} and results/plots/<dataset>_cost.{png,pdf}; returns the summary."""
    from selectbench.io import atomic_write_text

    dataset, reference = plan["dataset"], plan["reference"]
    jobs = job_costs(plan["jobs"], records)
    summary = attach_relative(cost_summary(jobs, reference), entries)
    tables = Path(tables)
    with atomic_file(tables / f"{dataset}_costs.csv", suffix=".csv") as tmp:
        summary.to_csv(tmp, index=False)
    notes = [e["relative_missing"] for e in entries if e.get("relative_missing")]
    atomic_write_text(tables / f"{dataset}_costs.md", to_markdown(summary, jobs, dataset, reference, notes))
    plot_costs(summary, reference, dataset, Path(plots) / f"{dataset}_cost", uses_gpus(jobs))
    return summary
