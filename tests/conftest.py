"""Shared fixtures: a tiny embedded dataset, prepared once per test session."""

from __future__ import annotations

import copy
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


TINY = ROOT / "tests" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return load_config(TINY)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_config):
    from selectbench.data.prepare import DataDir, prepare

    out = tmp_path_factory.mktemp("data") / "digits"
    prepare(tiny_config["datasets"]["digits"], out)
    return DataDir(out)
