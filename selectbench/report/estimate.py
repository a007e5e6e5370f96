"""GPU-hours a run will spend, before anything runs: every GPU job of the cost plan (rules/common.smk cost_plan,
the same job list the measured cost table uses) priced from the throughput figures in the config's
`gpu_estimate` section. The figures are estimates with their source written beside them, not measurements;
benchmarks/gpu_check.py measures the training and feature figures on a real GPU.

Work per job (tokens = examples × tokens_per_example of the dataset):
  proxy_finetune   pool tokens × epochs                             / proxy_train
  gradient_warmup  pool tokens × fraction × epochs                  / proxy_train
  feature_shard    pool tokens ÷ shards (× checkpoints for a feature read at every trajectory point)
                                                                    / the feature's figure (feature_work)
  train_target     pool tokens × ratio × epochs                     / target_train
  self_filter_train pool tokens × epochs (the target's recipe)      / target_train
  evaluate         answers of the job's tasks (lmms-eval limit applied) / generate (or generate_long)
Jobs of rules that ask for no GPU cost nothing here; a GPU job with no figure is left out with a reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from selectbench.io import atomic_write_text

COLUMNS = ["dataset", "job", "rule", "stage", "instance", "ratio", "seed", "gpus", "work", "unit", "figure",
           "gpu_hours", "note"]


def trajectory_points(proxy_finetune: dict[str, Any], examples: int) -> int:
    """Checkpoints the proxy fine-tune saves (training.train: `checkpoints` evenly spaced, else one every
    save_steps and the last step)."""
    steps = math.ceil(examples / proxy_finetune["global_batch"]) * proxy_finetune["epochs"] \
        if "global_batch" in proxy_finetune else \
        math.ceil(examples / (proxy_finetune["batch_size"] * proxy_finetune.get("grad_accum", 1))) \
        * proxy_finetune["epochs"]
    steps = math.ceil(steps)
    if proxy_finetune.get("checkpoints"):
        every = max(1, math.ceil(steps / proxy_finetune["checkpoints"]))
    else:
        every = max(1, proxy_finetune.get("save_steps", steps))
    return math.ceil(steps / every)


def _figure(figures: dict[str, Any], name: str) -> tuple[float, str] | None:
    """(per-GPU rate, unit) of a named throughput figure."""
    fig = figures.get(name)
    if not fig:
        return None
    for unit in ("tokens_per_s", "examples_per_s", "answers_per_s"):
        if unit in fig:
            return float(fig[unit]), unit
    raise ValueError(f"gpu_estimate.throughput.{name}: needs tokens_per_s, examples_per_s or answers_per_s")


def _answers(tasks: Iterable[str], items: dict[str, int], limit: dict[str, int]) -> dict[str, int | None]:
    return {t: (min(items[t], limit[t]) if t in limit and t in items else items.get(t)) for t in tasks}


def job_estimates(plan: dict[str, Any], config: dict[str, Any]) -> pd.DataFrame:
    """One row per distinct GPU job of one dataset's plan."""
    est = config["gpu_estimate"]
    dataset = plan["dataset"]
    size = est["datasets"].get(dataset)
    if size is None:
        raise ValueError(f"gpu_estimate.datasets has no entry for dataset {dataset!r} (examples, tokens_per_example)")
    examples, per_example = size["examples"], size["tokens_per_example"]
    pool_tokens = examples * per_example
    figures = est["throughput"]
    proxy = config["models"]["proxy"]["finetune"]
    target = config["models"]["target"]["finetune"]
    warmup = config.get("gradient_warmup", {})
    shards = config["features"]["shards"]
    lmms = config.get("evaluation", {}).get("lmms_eval", {})
    limit = lmms.get("limit") or {}
    long_tasks = set(est.get("long_answers", []))
    tasks_all = config["datasets"][dataset]["benchmarks"]
    points = trajectory_points(proxy, examples)

    rows, seen = [], set()
    for job in plan["jobs"]:
        if job["job"] in seen:
            continue
        seen.add(job["job"])
        rule, gpus = job["rule"], job.get("gpus", 0)
        row = {"dataset": dataset, "job": job["job"], "rule": rule, "stage": job["stage"],
               "instance": job.get("instance", ""), "ratio": job.get("ratio"), "seed": job.get("seed"),
               "gpus": gpus, "work": math.nan, "unit": "", "figure": "", "gpu_hours": math.nan, "note": ""}
        if not gpus:
            rows.append({**row, "gpu_hours": 0.0, "note": "no GPU"})
            continue
        if rule == "evaluate":
            # a per-task job's name ends in ".<benchmark>" (evaluation.jobs: per_task); a per-model job runs them all
            task = job.get("benchmark") or next((b for b in tasks_all if job["job"].endswith(f".{b}")), None)
            tasks = [task] if task else tasks_all
            answers = _answers(tasks, est["eval_items"], limit)
            missing = [t for t, n in answers.items() if n is None]
            if missing:
                rows.append({**row, "note": f"no gpu_estimate.eval_items for {', '.join(missing)}"})
                continue
            seconds = 0.0
            for task, n in answers.items():
                rate, _ = _figure(figures, "generate_long" if task in long_tasks else "generate")
                seconds += n / rate
            rows.append({**row, "work": sum(answers.values()), "unit": "answers",
                         "figure": "generate" + (" + generate_long" if long_tasks & set(tasks) else ""),
                         "gpu_hours": seconds / 3600})
            continue
        # Self-Filter's stage 1 trains on the whole pool (no ratio: 1); its score net costs nothing beside the model
        if rule in ("train_target", "self_filter_train"):
            work, name = pool_tokens * float(job.get("ratio", 1.0)) * target["epochs"], "target_train"
        elif rule == "proxy_finetune":
            work, name = pool_tokens * proxy["epochs"], "proxy_train"
        elif rule == "gradient_warmup":
            work, name = pool_tokens * warmup.get("fraction", 1.0) * warmup.get("epochs", 1), "proxy_train"
        elif rule == "feature_shard" and job.get("feature") in est.get("feature_work", {}):
            spec = est["feature_work"][job["feature"]]
            work = pool_tokens / shards * (points if spec.get("per_checkpoint") else 1)
            name = spec["figure"]
        else:
            rows.append({**row, "note": "GPU job without a throughput figure (gpu_estimate.feature_work)"
                         if rule == "feature_shard" else f"rule {rule} has no estimate"})
            continue
        fig = _figure(figures, name)
        if fig is None:
            rows.append({**row, "note": f"no gpu_estimate.throughput.{name}"})
            continue
        rate, unit = fig
        if unit == "examples_per_s":
            work = work / per_example
        rows.append({**row, "work": work, "unit": unit.split("_per_")[0], "figure": name,
                     "gpu_hours": work / rate / 3600,
                     "note": f"{points} checkpoints" if rule == "feature_shard"
                     and est["feature_work"][job["feature"]].get("per_checkpoint") else ""})
    return pd.DataFrame(rows, columns=COLUMNS)


def by_rule(jobs: pd.DataFrame) -> pd.DataFrame:
    """GPU-hours per dataset and rule, with each rule's share of the total."""
    table = (jobs[jobs.gpus > 0].groupby(["rule"], sort=False)
             .agg(jobs=("job", "size"), gpu_hours=("gpu_hours", lambda s: s.sum(min_count=1))).reset_index())
    total = table.gpu_hours.sum()
    table["share_%"] = 100 * table.gpu_hours / total if total else math.nan
    return table


def by_instance(jobs: pd.DataFrame, plans: list[dict[str, Any]]) -> pd.DataFrame:
    """Per dataset and method instance: selection (its shared jobs and score, each counted in full), subset
    training and evaluation GPU-hours (the stages of the cost plan)."""
    price = {(j.dataset, j.job): j.gpu_hours for j in jobs.itertuples()}
    out = []
    for plan in plans:
        per: dict[str, dict[str, float]] = {}
        for job in plan["jobs"]:
            if "instance" not in job:
                continue
            stage = {"shared": "selection", "score": "selection", "select": "selection", "train": "training",
                     "evaluate": "evaluation"}[job["stage"]]
            cell = per.setdefault(job["instance"], {"selection": 0.0, "training": 0.0, "evaluation": 0.0})
            cell[stage] += price.get((plan["dataset"], job["job"]), 0.0)
        for instance, cell in per.items():
            out.append({"dataset": plan["dataset"], "instance": instance, **cell,
                        "total": sum(cell.values())})
    return pd.DataFrame(out, columns=["dataset", "instance", "selection", "training", "evaluation", "total"])


def scaling(jobs: pd.DataFrame, plan: dict[str, Any]) -> dict[str, float]:
    """What one more seed, ratio (per 0.1 of the pool) or method adds to a dataset's GPU-hours: F = one full-data
    training, E = one model's evaluation, from this plan's own priced jobs."""
    mine = jobs[jobs.dataset == plan["dataset"]]
    price = dict(zip(mine.job, mine.gpu_hours))
    ref = [j for j in plan["jobs"] if j.get("instance") == plan["reference"]]
    seeds = {j["seed"] for j in ref if j["stage"] == "train"}
    full = sum(price[j["job"]] for j in ref if j["stage"] == "train") / max(1, len(seeds))
    evaluation = sum(price[j["job"]] for j in ref if j["stage"] == "evaluate") / max(1, len(seeds))
    runs = {(j["instance"], j["ratio"], j["seed"]) for j in plan["jobs"]
            if j["stage"] == "train" and j.get("instance") != plan["reference"]}
    methods = {i for i, _, _ in runs}
    ratios = sorted({r for _, r, _ in runs})
    n_seeds = len({s for _, _, s in runs}) or 1
    return {"full_training": full, "evaluation_per_model": evaluation,
            "per_seed": len(methods) * (sum(ratios) * full + len(ratios) * evaluation),
            "per_ratio_0.1": len(methods) * n_seeds * (0.1 * full + evaluation),
            "per_method": n_seeds * (sum(ratios) * full + len(ratios) * evaluation)}


def _md(frame: pd.DataFrame, digits: int = 1) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:,.{digits}f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def markdown(jobs: pd.DataFrame, plans: list[dict[str, Any]], config: dict[str, Any]) -> str:
    est = config["gpu_estimate"]
    total = jobs.gpu_hours.sum()
    rules = by_rule(jobs)
    share = dict(zip(rules.rule, rules["share_%"]))
    features = share.get("feature_shard", 0.0)
    lines = [f"# Estimated GPU-hours ({est['gpu']})", "",
             "Estimates from the throughput figures in the config's `gpu_estimate` (not measurements; their sources "
             "are listed below). GPU-hours = the job's work ÷ the figure per GPU, whatever the GPU count.", "",
             f"**Total: {total:,.0f} GPU-hours** (evaluation {share.get('evaluate', 0.0):.0f}%, feature passes "
             f"{features:.0f}%, subset and full-data training "
             f"{share.get('train_target', 0.0) + share.get('self_filter_train', 0.0):.0f}%)", "",
             "## Per rule", "", _md(rules), ""]
    for dataset, group in jobs.groupby("dataset", sort=False):
        lines += [f"## {dataset}", "", _md(by_rule(group)), ""]
        points = {j.note for j in group.itertuples() if "checkpoints" in j.note}
        if points:
            lines += [f"Trajectory features read {', '.join(sorted(points))} of the proxy fine-tune.", ""]
    lines += ["## Per method instance (selection counts its shared jobs in full)", "",
              _md(by_instance(jobs, plans)), ""]
    lines += ["## How it scales", "",
              "| dataset | one full-data training | one model's evaluation | + one seed | + a 10% ratio "
              "| + one method (before its selection) |", "|---|---|---|---|---|---|"]
    for plan in plans:
        sc = scaling(jobs, plan)
        lines.append(f"| {plan['dataset']} | {sc['full_training']:,.1f} | {sc['evaluation_per_model']:,.1f} | "
                     f"{sc['per_seed']:,.1f} | {sc['per_ratio_0.1']:,.1f} | {sc['per_method']:,.1f} |")
    lines.append("")
    unpriced = jobs[jobs.gpu_hours.isna()]
    if len(unpriced):
        lines += ["## Not estimated", ""] + [f"- {j.dataset} {j.job}: {j.note}" for j in unpriced.itertuples()] + [""]
    lines += ["## Figures (per GPU)", ""]
    for name, fig in est["throughput"].items():
        rate = next(f"{fig[u]:,} {u.replace('_per_s', '/s')}" for u in ("tokens_per_s", "examples_per_s",
                                                                          "answers_per_s") if u in fig)
        lines.append(f"- `{name}`: {rate}. {fig.get('source', 'no source given')}")
    for dataset, size in est["datasets"].items():
        lines.append(f"- `{dataset}`: {size['examples']:,} examples × {size['tokens_per_example']} tokens. "
                     f"{size.get('source', '')}".rstrip())
    return "\n".join(lines) + "\n"


def write(plans: list[dict[str, Any]], config: dict[str, Any], csv: Path, md: Path) -> pd.DataFrame:
    """Price every plan; write the per-job CSV and the Markdown summary; return the per-job frame."""
    jobs = pd.concat([job_estimates(plan, config) for plan in plans], ignore_index=True)
    text = markdown(jobs, plans, config)
    atomic_write_text(Path(csv), jobs.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(Path(md), text)
    return jobs
