"""evaluation.jobs per_task through the real snakemake CLI on the tiny config (random and the full-data reference):
one evaluate job per model and benchmark, each writing its own part of the model's rows, the report and the cost
table reading every part, and the same numbers as one per-model job on the same model."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, TINY, load_config

BENCHMARKS = load_config(TINY)["datasets"]["digits"]["benchmarks"]


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--configfile",
                           str(TINY), str(workdir / "jobs.yaml"), "--config", "run_methods=[random]",
                           "--directory", str(workdir), *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("eval_jobs")
    (workdir / "jobs.yaml").write_text(yaml.safe_dump({"evaluation": {"jobs": "per_task"}}))
    run = _snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


def test_one_job_per_model_and_benchmark(finished_run):
    evals = finished_run / "results" / "digits" / "eval"
    for run in ("full/r1_s0", "random/r0.5_s0"):
        for bench in BENCHMARKS:
            for suffix in ("csv", "items.csv", "predictions.json"):
                assert (evals / f"{run}.{bench}.{suffix}").stat().st_size > 0, (run, bench, suffix)
            with open(evals / f"{run}.{bench}.csv", newline="") as fh:
                assert {r["benchmark"] for r in csv.DictReader(fh)} == {bench}
            name = f"evaluate_{run.replace('/', '_')}.{bench}"
            assert (finished_run / "results" / "benchmarks" / "digits" / f"{name}.tsv").exists(), name
        assert not (evals / f"{run}.csv").exists()


def test_the_report_and_the_costs_read_every_part(finished_run):
    tables = finished_run / "results" / "tables"
    rows = pd.read_csv(tables / "digits.csv")
    assert set(zip(rows["method"], rows["benchmark"])) == {(m, b) for m in ("full", "random") for b in BENCHMARKS}
    costs = pd.read_csv(tables / "digits_costs.csv").set_index("method")
    records = finished_run / "results" / "benchmarks" / "digits"
    for method, run in (("full", "full_r1_s0"), ("random", "random_r0.5_s0")):
        parts = [pd.read_csv(records / f"evaluate_{run}.{b}.tsv", sep="\t")["s"].mean() for b in BENCHMARKS]
        assert costs.loc[method, "evaluate_s"] == pytest.approx(sum(parts))  # all of the model's jobs, not one


def test_per_task_rows_equal_one_per_model_job(finished_run):
    """The same trained model evaluated by one per-model job (evaluation.jobs per_model, in the same folder): the
    same rows as its per-task parts together."""
    (finished_run / "jobs.yaml").write_text(yaml.safe_dump({"evaluation": {"jobs": "per_model"}}))
    target = "results/digits/eval/random/r0.5_s0.csv"
    plan = _snakemake(finished_run, "-n", "--cores", "2", target)
    assert plan.returncode == 0 and re.search(r"^evaluate\s+1$", plan.stdout, re.M), plan.stdout[-2000:]
    run = _snakemake(finished_run, "--cores", "2", target)
    assert run.returncode == 0, run.stderr[-4000:]
    whole = pd.read_csv(finished_run / target)
    parts = pd.concat([pd.read_csv(finished_run / target.replace(".csv", f".{b}.csv")) for b in BENCHMARKS])
    key = ["benchmark", "metric"]
    assert whole.sort_values(key).reset_index(drop=True).equals(parts.sort_values(key).reset_index(drop=True))
