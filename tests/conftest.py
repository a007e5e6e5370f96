"""Shared fixtures: a tiny embedded dataset, prepared once per test session."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_config(*overrides: Path) -> dict:
    """The default config with override files merged in recursively (as snakemake --configfile does)."""
    cfg = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    for path in overrides:
        _merge(cfg, yaml.safe_load(Path(path).read_text()))
    return cfg


def _merge(base: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def run_standalone_dag(workdir: Path, cfg: dict, timeout: int = 900) -> Path:
    """The whole DAG of a complete (standalone) config, written to workdir/config.yaml, run through the real
    snakemake CLI on 2 cores; returns the results folder (the run must succeed)."""
    import subprocess
    import sys

    config = Path(workdir) / "config.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2",
                          "--configfile", str(config), "--directory", str(workdir)],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-4000:]
    return Path(workdir) / "results"


TINY = ROOT / "tests" / "tiny.yaml"
TINY_RECIPE = ROOT / "tests" / "tiny_recipe.yaml"
TINY_VISION_FLAN = ROOT / "tests" / "tiny_vision_flan.yaml"  # a dataset in Vision-Flan's layout


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """The tiny pool with the digits recipe at tiny sizes: models built from nothing in seconds."""
    return load_config(TINY, TINY_RECIPE)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_config):
    from selectbench.data.datadir import DataDir
    from selectbench.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare(tiny_config["datasets"]["digits"], out)
    return DataDir(out)


def pytest_sessionfinish(session, exitstatus):
    """A skipped test is a test that did not run: the suite fails on skips (tests/setup installs what every test
    needs), unless SELECTBENCH_ALLOW_SKIP=1 is set for a partial environment."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0 and os.environ.get("SELECTBENCH_ALLOW_SKIP") != "1":
        reporter.write_line(f"{len(skipped)} test(s) skipped: run tests/setup, or set SELECTBENCH_ALLOW_SKIP=1",
                            red=True)
        session.exitstatus = 1
