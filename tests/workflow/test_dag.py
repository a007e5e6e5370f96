"""The whole DAG end to end on the reduced config (the default's flow: shipped pretrained parts, no model built
from nothing), plus config validation, through the real snakemake CLI."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY, load_config

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dag")
    run = snakemake(workdir, "--cores", "2", "--configfile", str(TINY))
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


def test_every_stage_produced_output(finished_run):
    results = finished_run / "results"
    assert not (results / "digits" / "tokenizer").exists(), "the shipped parts bring their own tokenizer"
    for pattern in ["digits/data/pool.json", "digits/base/target/model/model.safetensors",
                    "digits/scores/random.npz", "digits/subsets/random/r0.5_s0.json",
                    "digits/subsets/random/r0.5_s0.meta.json", "digits/subsets/random/r0.5_s0.records.json",
                    "digits/target/random/r0.5_s0/model/*.safetensors",
                    "digits/target/full/r1_s0/model/*.safetensors", "digits/eval/full/r1_s0.csv",
                    "tables/digits.md", "tables/digits.tex", "plots/digits_relative.png", "plots/digits_relative.pdf",
                    "logs/digits/train_target_full_r1_s0.log", "benchmarks/digits/train_target_full_r1_s0.tsv",
                    "digits/proxy/finetune/checkpoints.json",
                    "digits/features/attention_trajectories/*/shard0-of-2.npz",
                    "digits/features/attention_trajectories/*/shard1-of-2.npz",
                    "digits/features/attention_trajectories/*.npz", "digits/scores/xmas.npz",
                    "digits/subsets/xmas/r0.5_s0.json", "digits/eval/xmas/r0.5_s0.csv",
                    "digits/features/proxy_token_stats/*.npz", "digits/features/clip_score/*.npz",
                    "digits/features/lora_gradients/*.npz", "digits/clip/model.json", "digits/gradient/warmup.json",
                    "digits/eval/gradient/r0.5_s0.csv", "digits/eval/clip_score/r0.5_s0.csv",
                    "tables/digits_costs.csv", "tables/digits_costs.md", "plots/digits_cost.png",
                    "plots/digits_cost.pdf", "benchmarks/digits/costs.tsv",
                    "tables/digits.provenance.json", "tables/digits_comparisons.csv", "tables/digits_comparisons.md",
                    "tables/digits_published.md", "tables/overview.md", "plots/overview.png"]:
        found = list(results.glob(pattern))
        assert found, pattern
        assert all(p.stat().st_size > 0 for p in found), pattern


def test_tables_say_what_made_them(finished_run):
    prov = json.loads((finished_run / "results/tables/digits.provenance.json").read_text())
    pool = json.loads((finished_run / "results/digits/data/manifest.json").read_text())["pool_sha256"]
    assert prov["pool_sha256"] == pool and len(prov["config_sha256"]) == 64
    assert prov["code"] and prov["versions"]["torch"] and prov["config"]["methods"] and prov["machine"]
    assert prov["protocols"]["pope"] == "selectbench built-in evaluator, embedded sets"
    md = (finished_run / "results/tables/digits.md").read_text()
    assert f"pool sha256 {pool[:12]}" in md and "**Made by**" in md
    meta = json.loads((finished_run / "results/digits/subsets/xmas/r0.5_s0.meta.json").read_text())
    assert meta["code"] == prov["code"] and meta["pool_sha256"] == pool


def test_comparison_numbers_are_rounded_so_thread_counts_do_not_show(finished_run):
    with open(finished_run / "results/tables/digits_comparisons.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    numbers = [r[c] for r in rows for c in ("difference", "ci_low", "ci_high", "p")]
    assert rows and all(len(v.split(".")[1]) <= 6 for v in numbers if "." in v and "e" not in v)


def test_html_report_has_the_tables_and_plots_with_captions(finished_run):
    run = snakemake(finished_run, "--cores", "1", "--configfile", str(TINY), "--report", "report.html")
    assert run.returncode == 0, run.stderr[-3000:]
    html = (finished_run / "report.html").read_text(errors="replace")
    for name in ("digits.csv", "digits_comparisons.csv", "digits_relative.png", "overview.md", "digits_costs.md"):
        assert name in html, name
    assert "paired comparison" in html  # a caption


def test_long_table_has_every_run_benchmark_and_metric(finished_run):
    with open(finished_run / "results/tables/digits.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["dataset", "method", "ratio", "seed", "benchmark", "metric", "value", "protocol",
                             "ci_low", "ci_high"]
    # every primary metric row carries its interval over the items, around its value
    primary = [r for r in rows if (r["benchmark"], r["metric"]) in {("pope", "f1"), ("gqa", "exact_match"),
                                                                      ("mmvet", "judge_score")}]
    assert primary and all(float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"]) for r in primary)
    assert all(r["ci_low"] == "" for r in rows if r["metric"] == "yes_ratio")  # no per-item record: missing
    runs = {(r["method"], float(r["ratio"]), int(r["seed"])) for r in rows}
    methods = list(load_config(TINY)["methods"])
    assert runs == {("full", 1.0, 0)} | {(m, 0.5, 0) for m in methods}
    assert {"random", "xmas", "perplexity", "el2n", "clip_score", "gradient"} <= set(methods)
    primary = {(r["method"], r["benchmark"], r["metric"]) for r in rows}
    for method in ["full"] + methods:
        for bench, metric in [("pope", "f1"), ("textvqa", "vqa_accuracy"), ("vqav2", "vqa_accuracy"),
                              ("gqa", "exact_match"), ("mmbench", "circular_accuracy"), ("mmvet", "judge_score")]:
            assert (method, bench, metric) in primary
    assert all(0 <= float(r["value"]) <= 100 for r in rows)


def test_cost_table_attributes_shared_work_to_every_method_that_needs_it(finished_run):
    import pandas as pd

    costs = pd.read_csv(finished_run / "results/tables/digits_costs.csv").set_index("method")
    assert set(costs.index) == {"full", *load_config(TINY)["methods"]}
    assert not costs["missing"].astype("string").fillna("").str.contains("no record|unreadable").any()
    assert costs["total_s"].notna().all()
    # perplexity and el2n both pay the one proxy fine-tune and token-statistics pass they share
    assert costs.loc["perplexity", "shared_s"] == costs.loc["el2n", "shared_s"] > costs.loc["random", "shared_s"] == 0
    assert costs.loc["xmas", "selection_vs_full_s"] == pytest.approx(
        costs.loc["xmas", "selection_s"] / costs.loc["full", "train_s"])
    assert costs.loc["full", "rel"] == pytest.approx(100)


def test_the_base_models_are_the_shipped_parts(finished_run):
    from selectbench.embedded.parts import shipped_dir

    for role in ("target", "proxy"):
        summary = json.loads((finished_run / f"results/digits/base/{role}/train_summary.json").read_text())
        assert summary["assembled"] == {"llava": f"pkg://selectbench.embedded/pretrained/{role}"}
        assert "not run" in summary["stage1"]
    clip = json.loads((finished_run / "results/digits/clip/model.json").read_text())
    assert clip == {"source": "pkg://selectbench.embedded/pretrained/clip", "trained_here": False}
    assert shipped_dir().is_dir()


def test_job_command_lines_stay_short(finished_run):
    """Jobs read their configuration from settings files, not kilobytes of JSON on the command line."""
    logs = sorted((finished_run / ".snakemake" / "log").glob("*.snakemake.log"))
    shells = max(([line.split("Shell command: ", 1)[1] for line in log.read_text().splitlines()
                   if line.startswith("Shell command: ")] for log in logs), key=len)  # the run, not --report
    args = [arg for line in shells for arg in shlex.split(line)]
    assert len(shells) > 20 and max(len(arg) for arg in args) < 200, max(args, key=len)
    assert list((finished_run / "results" / "settings").glob("models.target-*.json"))


def test_every_evaluation_keeps_its_per_item_scores(finished_run):
    from selectbench.report import load_items, load_results

    items, rows = load_items(finished_run / "results"), load_results(finished_run / "results")
    runs = {(m, r, s) for m, r, s in rows[["method", "ratio", "seed"]].itertuples(index=False)}
    assert {(m, r, s) for m, r, s in items[["method", "ratio", "seed"]].itertuples(index=False)} == runs
    means = items.groupby(["method", "benchmark", "metric"])["value"].mean()
    for bench, metric in [("textvqa", "vqa_accuracy"), ("gqa", "exact_match"), ("mmbench", "circular_accuracy"),
                          ("mmvet", "judge_score"), ("pope", "accuracy")]:
        table = rows[(rows.benchmark == bench) & (rows.metric == metric)].set_index("method")["value"]
        for method, value in table.items():
            assert means[(method, bench, metric)] == pytest.approx(value, abs=1e-3), (method, bench)


def test_snakemake_report_renders(finished_run):
    run = snakemake(finished_run, "--configfile", str(TINY), "--report", "report.html", timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (finished_run / "report.html").stat().st_size > 10_000


def test_second_invocation_has_nothing_to_do(finished_run):
    run = snakemake(finished_run, "--cores", "2", "--configfile", str(TINY), "-n")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


@pytest.mark.parametrize("override, message", [
    ({"methods": {"random": {}, "no_such_method": {}}}, "unknown method 'no_such_method'"),
    ({"ratios": [0.0]}, "ratios"),
    ({"ratios": [1.5]}, "ratios"),
    ({"datasets": {"digits": {"source": "embedded", "benchmarks": ["pope", "imagenet"]}}}, "benchmarks"),
    ({"datasets": {"digits": {"source": "nowhere"}}}, "datasets.digits.source: unknown source 'nowhere'"),
    ({"models": {"target": {"builder": "magic"}}}, "models.target.builder: unknown builder 'magic'"),
    ({"models": {"proxy": {"builder": "digits_recipe", "recipe": {"arch": {}}}}, "tokenizer":{"vocab_size": 300}},
     "models.proxy.builder 'digits_recipe': its settings fail"),
    ({"evaluation": {"backend": "vibes"}}, "evaluation.backend: unknown evaluator 'vibes'"),
])
def test_bad_config_is_rejected_before_anything_runs(tmp_path, override, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(override))
    run = snakemake(tmp_path, "-n", "--configfile", str(TINY), str(bad), timeout=120)
    assert run.returncode != 0
    assert message in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()
