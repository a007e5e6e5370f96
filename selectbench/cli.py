"""Command line of the pipeline steps; every Snakemake rule calls one of these subcommands.

Configuration reaches a step as JSON: inline, or "@file.json" naming a settings file the workflow wrote
(results/settings/, content-addressed, so a config change re-runs exactly the steps it affects and the command
line stays short). A step can be re-run by hand from its log line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

# Every step runs offline unless the environment says otherwise (HF_HUB_OFFLINE=0): weights come from the local
# Hugging Face cache, so a missing one fails at once instead of starting a download on a compute node. Set before
# any Hugging Face library is imported, since they read it once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from selectbench.config import read_settings
from selectbench.data.datadir import DataDir
from selectbench.io import atomic_file, atomic_write_json, atomic_write_text


def cmd_prepare(a) -> None:
    from selectbench.data.prepare import prepare

    manifest = prepare(a.dataset_config, Path(a.out))
    logging.info("prepared %s: %d pool records", a.out, manifest["pool_size"])


def cmd_base(a) -> None:
    from selectbench.training.stages import train_base

    tokenizer = Path(a.tokenizer) if a.tokenizer else None  # pretrained models bring their own
    s = train_base(DataDir(a.data), tokenizer, a.model_config, a.seed, Path(a.out), a.threads)
    loss = "not run" if s.get("train_loss") is None else f"loss {s['train_loss']:.4f}"
    logging.info("base model published: stage 1 %s, %.0f s", loss, s["wall_s"])


def cmd_finetune(a) -> None:
    from selectbench.training.stages import finetune

    from selectbench.data.pools import read_subset

    rows = read_subset(DataDir(a.data), Path(a.subset)) if a.subset else None
    s = finetune(DataDir(a.data), Path(a.base), rows, a.model_config, a.seed, Path(a.out), a.threads)
    logging.info("fine-tune done: %d examples, loss %.4f in %.0f s", s["examples"], s["train_loss"], s["wall_s"])
    from selectbench.training.train import is_main_process

    if a.checkpoint_list and is_main_process():
        from selectbench.training.stages import checkpoint_dirs

        dirs = [str(p) for p in checkpoint_dirs(Path(a.out))]
        if not dirs:
            raise SystemExit(f"{a.out}: training saved no checkpoint; set finetune.checkpoints in the config")
        atomic_write_json(Path(a.checkpoint_list), dirs)


def cmd_score(a) -> None:
    from selectbench.selection.registry import Instance
    from selectbench.selection.run import score

    inst = Instance(a.instance["label"], a.instance["method"], tuple(sorted(a.instance["params"].items())))
    score(a.methods_dir, DataDir(a.data), a.dataset, inst, a.artifacts, Path(a.out), a.threads)


def cmd_select(a) -> None:
    from selectbench.selection.registry import Instance
    from selectbench.selection.run import select

    inst = Instance(a.instance["label"], a.instance["method"], tuple(sorted(a.instance["params"].items())))
    meta = select(a.methods_dir, DataDir(a.data), a.dataset, inst, Path(a.scores), a.ratio, a.seed, Path(a.out))
    logging.info("selected %d of %d (%s, ratio %g, seed %d)", meta["size"], meta["pool_size"], inst.label,
                 a.ratio, a.seed)


def cmd_export_subset(a) -> None:
    from selectbench.data.pools import export_subset

    info = export_subset(Path(a.data), Path(a.subset), Path(a.out))
    logging.info("exported %d records (%d text-only) to %s", info["records"], info["text_only"], info["out"])


def cmd_clip(a) -> None:
    from selectbench.models.clip import clip_pointer

    atomic_write_json(Path(a.out), clip_pointer(DataDir(a.data), Path(a.tokenizer) if a.tokenizer else None,
                                                a.config, Path(a.model_dir), a.threads))


def cmd_gradient_warmup(a) -> None:
    from selectbench.features.gradients import run_warmup, warmup_start

    start = warmup_start(a.warmup, a.base and Path(a.base), a.checkpoints and Path(a.checkpoints))
    summary = run_warmup(DataDir(a.data), start, a.model_config, a.warmup, Path(a.out_dir), a.threads)
    logging.info("gradient warm-up from %s: %d rows, loss %.4f", start, summary["rows"], summary["train_loss"])
    atomic_write_json(Path(a.out), {"model": str(start.resolve()), "warmup": str(Path(a.out_dir).resolve())})


def cmd_self_filter_train(a) -> None:
    from selectbench.features.sharding import load_npz
    from selectbench.training.self_filter import check_features, train_score_net
    from selectbench.training.train import is_main_process

    data = DataDir(a.data)
    features = check_features(load_npz(Path(a.features), ["embedding"])["embedding"], len(data.pool), a.features)
    summary = train_score_net(data, Path(a.base), features, a.model_config, a.seed, Path(a.out_dir), a.threads)
    logging.info("Self-Filter stage 1: %d examples, loss %.4f in %.0f s", summary["examples"], summary["train_loss"],
                 summary["wall_s"])
    if is_main_process():
        atomic_write_json(Path(a.out), {"score_net": str((Path(a.out_dir) / "score_net.npy").resolve()),
                                        "features": str(Path(a.features).resolve()),
                                        "summary": str((Path(a.out_dir) / "train_summary.json").resolve())})


def cmd_feature_shard(a) -> None:
    from selectbench.features import ShardJob, job_fingerprint, with_plugins
    from selectbench.features.sharding import claim_parts, parts_dir
    from selectbench.selection.registry import discover

    features = with_plugins(discover(a.methods_dir))
    job = ShardJob(DataDir(a.data), {k: Path(v) for k, v in a.inputs.items()}, a.spec, a.model_config, a.shard,
                   a.shards, a.batch_size, Path(a.out), a.threads, a.device, a.dtype)
    # parts a killed run of this job left are resumed only if that run had the same inputs, settings and code
    claim_parts(parts_dir(job.out), job_fingerprint(job, a.feature))
    summary = features[a.feature].load()(job)
    logging.info("%s shard %d/%d: %d examples in %.1f s", a.feature, a.shard, a.shards, summary["examples"],
                 summary["seconds"])


def cmd_feature_gather(a) -> None:
    from selectbench.features.sharding import gather

    merged = gather([Path(p) for p in a.shards], len(DataDir(a.data).pool), Path(a.out))
    logging.info("gathered %d shards: %d of %d rows covered", len(a.shards), int(merged["covered"].sum()),
                 len(merged["covered"]))


def cmd_evaluate(a) -> None:
    from selectbench import registry
    from selectbench.evaluation.evaluators import EvalJob

    job = EvalJob(Path(a.model), Path(a.data), a.benchmarks, a.template, a.key, Path(a.out), Path(a.predictions),
                  a.batch_size, a.threads, a.settings, Path(a.items) if a.items else None)
    rows = registry.load("evaluator", a.backend, "evaluation.backend")(job)
    for r in rows:
        logging.info("%s %s = %.2f", r["benchmark"], r["metric"], r["value"])


def report_provenance(a, summary: list[dict]) -> dict:
    """What a dataset's tables record about their making: code, config digest (and the config), pool sha256,
    libraries, machine, each benchmark's protocol and the bootstrap's settings."""
    from selectbench.versions import provenance

    pool = json.loads(Path(a.manifest).read_text()).get("pool_sha256") if a.manifest else None
    return provenance(dataset=a.dataset, config_sha256=(a.config or {}).get("sha256"), pool_sha256=pool,
                      protocols=summary[0]["protocols"] if summary else {},
                      bootstrap={"replicates": a.bootstrap, "seed": a.bootstrap_seed},
                      config=(a.config or {}).get("config"))


def cmd_report(a) -> None:
    from selectbench.report.plots import plot_relative
    from selectbench.report.tables import (
        attach_comparisons, attach_intervals, comparisons_frame, comparisons_markdown, parse_pair, read_published,
        read_rows, summarise, to_latex, to_markdown, write_long,
    )

    from selectbench.report.intervals import ItemTable, Replicates, row_intervals

    rows = read_rows([Path(p) for p in a.inputs])
    out = Path(a.tables)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, a.reference, a.benchmarks, a.chance_margin)
    prov = report_provenance(a, summary)
    intervals = {}
    if a.items:
        # one item draw for the rows' intervals, the cells' intervals and the paired comparisons
        boot = Replicates(ItemTable.from_files([Path(p) for p in a.items]), a.bootstrap, a.bootstrap_seed)
        intervals = row_intervals(boot, rows)
        attach_intervals(summary, boot, a.reference, a.benchmarks)
        if a.baseline and any(e["method"] == a.baseline for e in summary):
            attach_comparisons(summary, boot, a.baseline, reference=a.reference,
                               requested=[parse_pair(p) for p in a.compare])
    write_long(rows, out / f"{a.dataset}.csv", intervals)
    atomic_write_json(out / f"{a.dataset}.provenance.json", prov, indent=1)
    # the summary entries (cells, intervals, marks) for views across datasets (selectbench.report.overview)
    atomic_write_json(out / f"{a.dataset}.summary.json", {"dataset": a.dataset, "summary": summary}, indent=None)
    with atomic_file(out / f"{a.dataset}_comparisons.csv") as tmp:
        # rounded like the long table's intervals: BLAS thread counts move the last bits of the bootstrap sums
        comparisons_frame(summary).round(6).to_csv(tmp, index=False)
    atomic_write_text(out / f"{a.dataset}_comparisons.md", comparisons_markdown(summary, a.dataset))
    if a.published:  # the published figures beside, never mixed into, the suite's (a note where there are none)
        from selectbench.report.published import write_published

        write_published(summary, Path(a.published), a.dataset, a.benchmarks, out / f"{a.dataset}_published")
    published = read_published(Path(a.published), a.dataset) if a.published else {}
    task_aware = set(a.task_aware)
    atomic_write_text(out / f"{a.dataset}.md", to_markdown(summary, a.benchmarks, a.dataset, published,
                                                           task_aware=task_aware, provenance=prov))
    atomic_write_text(out / f"{a.dataset}.tex", to_latex(summary, a.benchmarks, a.dataset, task_aware=task_aware,
                                                         provenance=prov))
    plot_relative(summary, a.reference, a.dataset, Path(a.plots) / f"{a.dataset}_relative", published)


def cmd_costs(a) -> None:
    from selectbench.report.costs import write_costs
    from selectbench.report.results import load_results
    from selectbench.report.tables import summarise

    rows = load_results(Path(a.table)).to_dict("records")
    entries = summarise(rows, a.plan["reference"], a.benchmarks, a.chance_margin)
    summary = write_costs(a.plan, Path(a.records), entries, Path(a.tables), Path(a.plots))
    for r in summary.itertuples():
        logging.info("%s ratio %g: selection %.1f s, training %.1f s, Rel. %% %.1f", r.method, r.ratio,
                     r.selection_s, r.train_s, r.rel)


def cmd_gpu_estimate(a) -> None:
    from selectbench.report.estimate import write

    jobs = write(a.plans, a.config, Path(a.csv), Path(a.md))
    print(Path(a.md).read_text(), end="")  # the plan on the console, before any GPU job is submitted
    logging.info("estimated %.0f GPU-hours over %d GPU jobs", jobs.gpu_hours.sum(), int((jobs.gpus > 0).sum()))


def cmd_overview(a) -> None:
    from selectbench.report.overview import write_overview

    write_overview([Path(p) for p in a.summaries], a.reference, Path(a.tables), Path(a.plots))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selectbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, *args):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        for flag, kw in args:
            p.add_argument(flag, **kw)
        return p

    req = {"required": True}
    js = {"required": True, "type": read_settings}
    add("prepare", cmd_prepare, ("--dataset-config", js), ("--out", req))
    add("base", cmd_base, ("--data", req), ("--tokenizer", {"default": None}), ("--model-config", js),
        ("--seed", {"type": int, "default": 0}), ("--out", req), ("--threads", {"type": int, "default": 1}))
    add("finetune", cmd_finetune, ("--data", req), ("--base", req), ("--subset", {"default": None}),
        ("--model-config", js), ("--seed", {"type": int, "default": 0}), ("--out", req),
        ("--checkpoint-list", {"default": None}), ("--threads", {"type": int, "default": 1}))
    common_sel = [("--methods-dir", {"nargs": "+", **req}), ("--data", req), ("--dataset", req),
                  ("--instance", js)]
    add("score", cmd_score, *common_sel, ("--artifacts", {"type": read_settings, "default": {}}), ("--out", req),
        ("--threads", {"type": int, "default": 1}))
    add("select", cmd_select, *common_sel, ("--scores", req), ("--ratio", {"type": float, **req}),
        ("--seed", {"type": int, **req}), ("--out", req))
    add("export-subset", cmd_export_subset, ("--data", req), ("--subset", req), ("--out", req))
    add("clip", cmd_clip, ("--data", req), ("--tokenizer", {"default": None}), ("--config", js), ("--model-dir", req),
        ("--out", req), ("--threads", {"type": int, "default": 1}))
    add("gradient-warmup", cmd_gradient_warmup, ("--data", req), ("--base", {"default": None}),
        ("--checkpoints", {"default": None}), ("--model-config", js), ("--warmup", js), ("--out-dir", req),
        ("--out", req), ("--threads", {"type": int, "default": 1}))
    add("self-filter-train", cmd_self_filter_train, ("--data", req), ("--base", req), ("--features", req),
        ("--model-config", js), ("--seed", {"type": int, "default": 0}), ("--out-dir", req), ("--out", req),
        ("--threads", {"type": int, "default": 1}))
    add("feature-shard", cmd_feature_shard, ("--feature", req), ("--methods-dir", {"nargs": "+", **req}),
        ("--spec", js), ("--data", req),
        ("--inputs", js), ("--model-config", js), ("--shard", {"type": int, **req}),
        ("--shards", {"type": int, **req}), ("--batch-size", {"type": int, "default": 32}),
        ("--device", {"default": "auto"}), ("--dtype", {"default": "float32"}), ("--out", req),
        ("--threads", {"type": int, "default": 1}))
    add("feature-gather", cmd_feature_gather, ("--data", req), ("--shards", {"nargs": "+", **req}), ("--out", req))
    add("evaluate", cmd_evaluate, ("--model", req), ("--data", req), ("--benchmarks", {"nargs": "+", **req}),
        ("--template", js), ("--key", js), ("--out", req), ("--predictions", req), ("--items", {"default": None}),
        ("--batch-size", {"type": int, "default": 64}), ("--threads", {"type": int, "default": 1}),
        ("--backend", {"default": "builtin"}), ("--settings", {"type": read_settings, "default": {}}))
    add("report", cmd_report, ("--dataset", req), ("--inputs", {"nargs": "+", **req}), ("--reference", req),
        ("--benchmarks", {"nargs": "+", **req}), ("--tables", req), ("--plots", req), ("--published", {}),
        ("--chance-margin", {"type": float, "default": None}), ("--task-aware", {"nargs": "*", "default": []}),
        ("--items", {"nargs": "*", "default": []}), ("--bootstrap", {"type": int, "default": 1000}),
        ("--bootstrap-seed", {"type": int, "default": 0}), ("--baseline", {"default": "random"}),
        ("--compare", {"nargs": "*", "default": []}), ("--config", {"type": read_settings, "default": None}),
        ("--manifest", {"default": None}))
    add("overview", cmd_overview, ("--summaries", {"nargs": "+", **req}), ("--reference", req), ("--tables", req),
        ("--plots", req))
    add("gpu-estimate", cmd_gpu_estimate, ("--plans", js), ("--config", js), ("--csv", req), ("--md", req))
    add("costs", cmd_costs, ("--table", req), ("--plan", js), ("--records", req),
        ("--benchmarks", {"nargs": "+", **req}), ("--chance-margin", {"type": float, "default": None}),
        ("--tables", req), ("--plots", req))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
