"""The DAG follows the feature-pass settings: features.dtype and features.gradient_batch_size reach the shard jobs'
command lines, and gradient_warmup.start: proxy_checkpoint makes the warm-up wait for the proxy fine-tune and
start from its checkpoint list (and the cost plan count that fine-tune for the gradient method). Dry runs only."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import yaml

from tests.conftest import ROOT


def _plan(workdir, override: dict | None = None) -> dict[str, list[dict]]:
    """rule → its planned jobs (input line and shell command) of a dry run of the default config (+ override)."""
    args = [sys.executable, "-m", "snakemake", "-n", "--cores", "all", "--directory", str(workdir)]
    if override:
        extra = workdir / "override.yaml"
        extra.write_text(yaml.safe_dump(override))
        args += ["--configfile", str(ROOT / "config" / "default.yaml"), str(extra)]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head:
            inputs = re.search(r"^\s+input: (.*)$", block, re.M)
            shell = re.search(r"^Shell command: (.*)$", block, re.M)
            jobs.setdefault(head.group(1), []).append({"input": inputs.group(1) if inputs else "",
                                                       "shell": shell.group(1) if shell else ""})
    return jobs


def _shared_jobs(workdir, jobs, instance: str) -> set[str]:
    plan_file = re.search(r"--plan @(\S+)", jobs["costs"][0]["shell"]).group(1)
    plan = json.loads((workdir / plan_file).read_text())
    return {j["job"] for j in plan["jobs"] if j.get("instance") == instance and j["stage"] == "shared"}


def test_the_default_warms_up_from_the_base_in_float32(tmp_path):
    jobs = _plan(tmp_path)
    (warmup,) = jobs["gradient_warmup"]
    assert "base/proxy/model" in warmup["input"] and "checkpoints.json" not in warmup["input"]
    assert " --base results/digits/base/proxy " in warmup["shell"]
    shards = jobs["feature_shard"]
    assert shards and all(" --batch-size 32 " in j["shell"] and " --dtype float32 " in j["shell"] for j in shards)
    assert "proxy_finetune" not in _shared_jobs(tmp_path, jobs, "gradient")


def test_configured_start_dtype_and_gradient_batch_reach_the_jobs(tmp_path):
    jobs = _plan(tmp_path, {"gradient_warmup": {"start": "proxy_checkpoint", "checkpoint": 1},
                            "features": {"gradient_batch_size": 4, "dtype": "bfloat16"}})
    (warmup,) = jobs["gradient_warmup"]
    assert "results/digits/proxy/finetune/checkpoints.json" in warmup["input"]
    assert "base/proxy/model" not in warmup["input"]
    assert " --checkpoints results/digits/proxy/finetune/checkpoints.json " in warmup["shell"]
    assert '"start": "proxy_checkpoint", "checkpoint": 1' in warmup["shell"]
    for job in jobs["feature_shard"]:
        batch = 4 if "--feature lora_gradients " in job["shell"] else 32
        assert f" --batch-size {batch} " in job["shell"] and " --dtype bfloat16 " in job["shell"], job["shell"]
    assert {"base_proxy", "proxy_finetune", "gradient_warmup"} <= _shared_jobs(tmp_path, jobs, "gradient")


def test_a_bad_start_is_refused_when_planned(tmp_path):
    extra = tmp_path / "bad.yaml"
    extra.write_text(yaml.safe_dump({"gradient_warmup": {"start": "target"}, "features": {"dtype": "fp8"}}))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "all", "--directory", str(tmp_path),
                          "--configfile", str(ROOT / "config" / "default.yaml"), str(extra)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "proxy_checkpoint" in run.stdout + run.stderr or "fp8" in run.stdout + run.stderr
