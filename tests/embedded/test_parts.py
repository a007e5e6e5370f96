"""The embedded default's pretrained parts: the shipped files match their manifest, and the recipe rebuilds them
through the workflow's own target (tiny sizes here), packed with the sha256 of every file and what built them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from selectbench.embedded.parts import MANIFEST, install, shipped_dir, verify
from tests.conftest import ROOT, TINY, TINY_RECIPE, load_config


def test_the_shipped_parts_match_their_manifest():
    manifest = verify(shipped_dir())
    assert set(manifest["parts"]) == {"target", "proxy", "clip"}
    built = manifest["built_by"]
    assert "embedded_parts" in built["command"] and built["versions"]["torch"].startswith("2.13.0")
    assert built["config"]["models"]["target"]["builder"] == "digits_recipe"
    assert built["config"]["threads"]["base_model"] == 1


def test_a_changed_shipped_file_is_caught(tmp_path):
    copy = tmp_path / "parts"
    install(shipped_dir(), copy)
    (copy / "proxy" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="proxy/config.json: sha256 differs"):
        verify(copy)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("parts")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2",
                          "--configfile", str(TINY), str(TINY_RECIPE), "--directory", str(workdir),
                          "embedded_parts"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir / "results" / "digits" / "parts"


def test_the_recipe_target_packs_every_part(rebuilt):
    manifest = verify(rebuilt)
    assert set(manifest["parts"]) == {"target", "proxy", "clip"}
    for part in manifest["parts"].values():
        assert "model.safetensors" in part["files"] and "tokenizer.json" in part["files"]
    recipe = load_config(TINY, TINY_RECIPE)["models"]["target"]["recipe"]
    assert manifest["built_by"]["config"]["models"]["target"]["recipe"] == recipe
    target = manifest["parts"]["target"]["summary"]
    assert "stage0_1_until_loss" in target and "vision_pretrain_cell_accuracy" in target
    assert not list(rebuilt.rglob("checkpoint-*")), "training checkpoints are not shipped"


def test_rebuilt_parts_plug_into_the_default_flow(rebuilt, tmp_path):
    """A config names rebuilt parts exactly as the default names the shipped ones."""
    installed = tmp_path / "pretrained"
    install(rebuilt, installed)
    assert (installed / MANIFEST).exists()
    cfg = {"models": {role: {"pretrained": {"llava": str(installed / role)}} for role in ("target", "proxy")},
           "clip": {"pretrained": str(installed / "clip")}, "methods": {"random": {}}}
    override = tmp_path / "rebuilt.yaml"
    override.write_text(yaml.safe_dump(cfg))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2",
                          "--configfile", str(TINY), str(override), "--directory", str(tmp_path),
                          "results/digits/base/target/train_summary.json"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads((tmp_path / "results/digits/base/target/train_summary.json").read_text())
    assert summary["assembled"] == {"llava": str(installed / "target")}
