"""The paper grid plans with the SLURM profile as users type it (`snakemake --cores all --profile slurm`), and
its GPU rules carry the resources of config/paper.yaml: multi-GPU jobs on one node, retries within their caps.
Nothing runs: a dry run needs neither data nor GPUs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
GPU_RULES = {"proxy_finetune", "gradient_warmup", "feature_shard", "train_target", "evaluate"}
PROFILE = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
ATTEMPTS = range(1, PROFILE["retries"] + 2)   # the first submission and every retry


def _plan(workdir, attempt: int) -> list[dict]:
    """The dry run's jobs at an attempt: rule, threads, resources and shell command of each."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "all", "--profile", "slurm",
                          "--attempt", str(attempt), "--directory", str(workdir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Using profiles slurm" in run.stdout + run.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        jobs.append({"rule": head.group(1), "threads": int(threads.group(1)) if threads else 1,
                     "resources": dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {},
                     "shell": shell.group(1) if shell else "",
                     "wildcards": dict(kv.split("=", 1) for kv in wildcards.group(1).split(", ")) if wildcards else {}})
    return jobs


def _first_request(job: dict) -> dict:
    """What config/paper.yaml asks for a job on its first attempt: the default overlaid with its rule's resources;
    a per-task evaluate job's runtime from resources.evaluate_runtime."""
    rules = PAPER["resources"]["rules"]
    name = "train_target" if job["rule"] == "train_reference" else job["rule"]
    first = {**PAPER["resources"]["default"], **rules.get(name, {})}
    if name == "evaluate":
        task = job["wildcards"]["part"].removeprefix(".")
        first["runtime"] = PAPER["resources"]["evaluate_runtime"].get(task, first["runtime"])
    return first


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[int, list[dict]]:
    workdir = tmp_path_factory.mktemp("paper_plan")
    return {attempt: _plan(workdir, attempt) for attempt in ATTEMPTS}


@pytest.fixture(scope="module")
def plan(plans) -> list[dict]:
    return plans[1]


def test_the_whole_grid_is_planned(plan):
    counts = Counter(job["rule"] for job in plan)
    methods = len(PAPER["methods"])
    subsets = sum(len(d["ratios"]) for d in PAPER["datasets"].values()) * methods * len(PAPER["seeds"])
    assert counts["train_target"] == subsets
    assert counts["train_reference"] == len(PAPER["datasets"]) * len(PAPER["reference_seeds"])
    # one evaluate job per trained model and task (evaluation.jobs: per_task)
    assert PAPER["evaluation"]["jobs"] == "per_task"
    tasks = {len(d["benchmarks"]) for d in PAPER["datasets"].values()}
    assert len(tasks) == 1 and counts["evaluate"] == (subsets + counts["train_reference"]) * tasks.pop()
    assert counts["prepare_data"] == len(PAPER["datasets"])
    assert counts["feature_shard"] % PAPER["features"]["shards"] == 0 and counts["feature_shard"] > 0
    assert counts["tokenizer"] == 0, "pretrained models bring their own tokenizer"
    ratios = {r for d in PAPER["datasets"].values() for r in d["ratios"]}
    assert ratios == {0.05, 0.1, 0.15, 0.2, 0.3, 0.5}


def test_gpu_rules_carry_the_configured_resources(plan):
    rules = PAPER["resources"]["rules"]
    seen = set()
    for job in plan:
        name = "train_target" if job["rule"] == "train_reference" else job["rule"]
        res = job["resources"]
        if name in GPU_RULES:
            seen.add(name)
            want = rules[name]
            assert int(res["gpu"]) == want["gpu"], job
            assert int(res["cpus_per_gpu"]) == want["cpus_per_gpu"], job
            assert int(res["mem_mb"]) == want["mem_mb"], job
            assert int(res["runtime"]) == _first_request(job)["runtime"], job
            assert "cpus_per_task" not in res, "cpus_per_task would override cpus_per_gpu in sbatch"
        elif job["rule"] != "all":
            assert "gpu" not in res, f"{job['rule']} is a CPU rule but asks for a GPU"
            assert int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0
    assert seen == GPU_RULES


def test_each_evaluate_job_runs_one_task_for_its_own_time(plans):
    """evaluation.jobs per_task: one job per model and task, writing its own part of the model's rows, asking for
    its task's minutes (resources.evaluate_runtime: VQAv2 val's 214k answers far more than MM-Vet's 218); on a retry
    twice that, within the cap."""
    sizes = PAPER["resources"]["evaluate_runtime"]
    cap = PAPER["resources"]["retry_cap"]["runtime"]
    for attempt, jobs in plans.items():
        seen = {}
        for job in jobs:
            if job["rule"] != "evaluate":
                continue
            task = job["wildcards"]["part"].removeprefix(".")
            assert f"--benchmarks {task} " in job["shell"] and f".{task}.csv" in job["shell"], job["shell"]
            seen[task] = int(job["resources"]["runtime"])
        assert seen == {t: min(m * 2 ** (attempt - 1), cap) for t, m in sizes.items()}, attempt
    assert sizes["vqav2_val"] > 4 * sizes["mmvet"]


def test_multi_gpu_rules_start_one_process_per_gpu(plan):
    for job in plan:
        if job["rule"] in ("train_target", "train_reference", "proxy_finetune"):
            n = PAPER["resources"]["rules"]["train_target" if job["rule"] != "proxy_finetune" else "proxy_finetune"]["gpu"]
            assert job["shell"].startswith(f"torchrun --standalone --nproc_per_node={n} -m selectbench.cli finetune")
        elif job["rule"] == "evaluate":
            assert "--backend lmms_eval" in job["shell"]
        elif job["rule"] == "feature_shard":
            assert job["shell"].startswith("python -m selectbench.cli feature-shard")


class _Resources(dict):
    __getattr__ = dict.__getitem__


def _sbatch(job: dict) -> str:
    """The sbatch line the installed SLURM executor plugin writes for a planned job."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    res = _Resources({key: int(value) if value.isdigit() else value for key, value in job["resources"].items()})
    params = {"run_uuid": "x", "slurm_logfile": "x.log", "comment_str": job["rule"], "account": "", "partition": "",
              "workdir": None}
    submitted = SimpleNamespace(resources=res, threads=job["threads"])
    return get_submit_command(submitted, params) + set_gres_string(submitted)


def test_no_multi_gpu_job_can_span_two_nodes(plans):
    multi = 0
    for jobs in plans.values():
        for job in jobs:
            if int(job["resources"].get("gpu", 0)) > 1:
                multi += 1
                assert job["resources"].get("nodes") == "1", job
                call = _sbatch(job)
                assert f"--gpus={job['resources']['gpu']}" in call and "--nodes=1" in call, call
    assert multi > 0


def test_no_retry_asks_for_more_than_its_cap(plans):
    cap, scale = PAPER["resources"]["retry_cap"], PAPER["resources"]["retry_scale"]
    assert set(scale) <= set(cap), "every resource that grows on retries has a cap"
    for attempt, jobs in plans.items():
        for job in jobs:
            if job["rule"] == "all":
                continue
            res = job["resources"]
            for key in scale:
                assert int(res[key]) <= cap[key], (attempt, job["rule"], key, res[key])
            first = _first_request(job)
            for key in scale:   # grows as configured until it meets the cap
                assert int(res[key]) == min(int(first[key] * scale[key] ** (attempt - 1)), cap[key]), (attempt, job)
    last = next(job for job in plans[max(ATTEMPTS)] if job["rule"] == "train_target")["resources"]
    assert (int(last["mem_mb"]), int(last["runtime"])) == (cap["mem_mb"], cap["runtime"])


def test_cpu_only_work_asks_for_no_gpu(plans):
    for jobs in plans.values():
        for job in jobs:
            if job["rule"] in ("base_model", "clip_model", "score", "select", "prepare_data", "feature_gather"):
                assert "gpu" not in job["resources"], job
                assert "--gpus" not in _sbatch(job) and "--cpus-per-task=" in _sbatch(job)
                assert not job["shell"].startswith("torchrun"), job


def test_each_rank_sets_its_share_of_the_jobs_threads(plan):
    launched = 0
    for job in plan:
        ranks = re.match(r"torchrun --standalone --nproc_per_node=(\d+)", job["shell"])
        if ranks:
            launched += 1
            per_rank = int(re.search(r" --threads (\d+)", job["shell"]).group(1))
            assert per_rank == max(1, job["threads"] // int(ranks.group(1))), job
    assert launched > 0


def test_slurm_profile_is_safe_to_rerun():
    profile = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["configfile"] == "config/paper.yaml"
    assert "code" not in profile["rerun-triggers"], "a comment edit must not retrain 7B models"
    assert profile["retries"] >= 1
    default = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    assert "executor" not in default and "configfile" not in default, "the workflow profile must stay local"


def _dry_run(tmp_path, override: dict) -> subprocess.CompletedProcess:
    extra = tmp_path / "override.yaml"
    extra.write_text(yaml.safe_dump(override))
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "all", "--profile", "slurm",
                           "--configfile", "config/paper.yaml", str(extra), "--directory", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_judge_scored_tasks_without_a_judge_are_refused_before_anything_runs(tmp_path):
    run = _dry_run(tmp_path, {"evaluation": {"lmms_eval": {"judge": None}}})
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "is scored by an LLM judge" in out and "evaluation.lmms_eval.judge is not set" in out


def test_a_base_trained_on_cpus_is_refused(tmp_path):
    stage1 = {"trainable": ["projector"], "epochs": 1, "batch_size": 32, "lr": 1.0e-3}
    run = _dry_run(tmp_path, {"models": {"proxy": {"stage1": stage1}}})
    assert run.returncode != 0
    assert "models.proxy.stage1 trains the proxy base in base_model" in run.stdout + run.stderr


def test_builtin_evaluator_refuses_lmms_task_names(tmp_path):
    run = _dry_run(tmp_path, {"evaluation": {"backend": "builtin"}})
    assert run.returncode != 0
    assert "are lmms-eval tasks" in run.stdout + run.stderr


def test_gpu_estimate_prices_the_paper_grid_before_anything_runs(tmp_path):
    """`snakemake --profile slurm gpu_estimate` runs one local job that prices every planned GPU job, here with the
    whole comparison set (config/paper_comparison.yaml) on top: every feature pass, both full-data trainings to
    select (the reference run for HL / MP, Self-Filter's stage 1) and each subset's training and evaluation."""
    import pandas as pd

    from selectbench.selection.registry import discover, expand

    overlay = ROOT / "config" / "paper_comparison.yaml"
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--profile", "slurm",
                          "--configfile", str(ROOT / "config" / "paper.yaml"), str(overlay),
                          "--directory", str(tmp_path), "gpu_estimate"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "# Estimated GPU-hours" in run.stdout + run.stderr   # printed on the console
    jobs = pd.read_csv(tmp_path / "results" / "plan" / "gpu_hours.csv")
    text = (tmp_path / "results" / "plan" / "gpu_hours.md").read_text()
    assert not jobs.gpu_hours.isna().any(), jobs[jobs.gpu_hours.isna()]
    assert f"**Total: {jobs.gpu_hours.sum():,.0f} GPU-hours**" in text
    methods = {**PAPER["methods"], **yaml.safe_load(overlay.read_text())["methods"]}
    instances = [i for i in expand(methods, discover(str(ROOT / "methods"))) if i.method != "full"]
    assert len(instances) == len(methods) + 1 - ("full" in methods)  # perplexity both ways
    models = sum(len(d["ratios"]) for d in PAPER["datasets"].values()) * len(instances) \
        * len(PAPER["seeds"]) + len(PAPER["datasets"]) * len(PAPER["reference_seeds"])
    assert (jobs.rule == "train_target").sum() == models
    assert (jobs.rule == "self_filter_train").sum() == len(PAPER["datasets"])
    tasks = {len(d["benchmarks"]) for d in PAPER["datasets"].values()}
    assert (jobs.rule == "evaluate").sum() == models * tasks.pop()          # per-task evaluate jobs
    assert "104 checkpoints" in set(jobs.note.dropna())                       # the released cadence at 665k
    assert not (tmp_path / "results" / "llava665k").exists()                  # nothing else ran
