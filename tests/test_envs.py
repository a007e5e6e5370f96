"""envs/ must install what pyproject.toml pins."""

import tomllib

import yaml

from tests.conftest import ROOT


def test_conda_env_matches_pyproject_pins():
    pins = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    env = yaml.safe_load((ROOT / "envs" / "selectbench.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins == {p for p in pip if "==" in p}


def test_paper_env_adds_the_paper_and_slurm_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    env = yaml.safe_load((ROOT / "envs" / "paper.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {p for p in pip if "==" in p} == set(project["dependencies"]) | set(extras["paper"]) | set(extras["slurm"])
