"""Everyday runs from the command line, planned by the real snakemake CLI: seeds and ratios given with --config
are typed, and run_methods / run_benchmarks narrow the default without a config file."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, TINY


def _plan(tmp_path, *config: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "-n", "-p", "--configfile", str(TINY), "--config", *config],
                          capture_output=True, text=True, timeout=300)


def _jobs(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}


def test_only_these_methods_three_seeds_one_more_ratio(tmp_path):
    run = _plan(tmp_path, "seeds=[0,1,2]", "ratios=[0.25,0.5]", "run_methods=[random]",
                "run_benchmarks=[pope,gqa]")
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = _jobs(run.stdout)
    assert jobs["train_reference"] == 1 and jobs["train_target"] == 2 * 3  # random: 2 ratios × 3 seeds
    evaluate = [line for line in run.stdout.splitlines() if "selectbench.cli evaluate" in line]
    assert evaluate and all("--benchmarks pope gqa --" in line for line in evaluate)


def test_a_misspelt_method_stops_planning_with_its_name(tmp_path):
    run = _plan(tmp_path, "run_methods=[randm]")
    assert run.returncode != 0 and "run_methods: ['randm'] are not under methods" in run.stdout + run.stderr
