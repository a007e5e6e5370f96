"""The whole DAG end to end, through the real snakemake CLI, on a pool in Vision-Flan's layout (many tasks) that
the vision_flan reader prepared: the path paper scale takes with Vision-Flan, on the digits world (random, xmas and
the full-data reference)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import TINY, TINY_VISION_FLAN, load_config, run_standalone_dag

DATASET = "digits_flan"
METHODS = {"random": {}, "xmas": {"clusters": 4}}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The tiny config's flow on the Vision-Flan-layout dataset alone (a config merge cannot remove the default's
    dataset or methods, so the run's config is written out whole)."""
    workdir = tmp_path_factory.mktemp("vision_flan_dag")
    cfg = load_config(TINY, TINY_VISION_FLAN)
    cfg.update(standalone=True, methods=METHODS, datasets={DATASET: cfg["datasets"][DATASET]})
    cfg["features"]["shards"] = 1  # sharding is test_dag's; one job less here
    return run_standalone_dag(workdir, cfg)


def test_the_pool_came_through_the_vision_flan_reader(finished_run):
    data = finished_run / DATASET / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    assert (manifest["source"], manifest["generator"]) == ("vision_flan", "embedded_vision_flan")
    assert "task" in manifest["metadata_fields"]
    report = json.loads((data / "validation.json").read_text())
    pool = json.loads((data / "pool.json").read_text())
    assert report["statistics"]["tasks"] == len({r["task"] for r in pool}) > 20
    assert all(r["task"] == r["task_name"] for r in pool)


def test_every_stage_produced_output(finished_run):
    runs = [f"{m}/r0.5_s0" for m in METHODS] + ["full/r1_s0"]
    patterns = [f"{DATASET}/data/pool.json", f"{DATASET}/base/target/model/model.safetensors",
                f"{DATASET}/proxy/finetune/checkpoints.json",
                f"{DATASET}/features/attention_trajectories/*/shard0-of-1.npz",
                f"{DATASET}/features/attention_trajectories/*.npz",
                *[f"{DATASET}/scores/{m}.npz" for m in METHODS],
                *[f"{DATASET}/subsets/{m}/r0.5_s0.json" for m in METHODS],
                *[f"{DATASET}/target/{r}/model/*.safetensors" for r in runs],
                *[f"{DATASET}/eval/{r}.csv" for r in runs],
                f"tables/{DATASET}.md", f"tables/{DATASET}.csv", f"plots/{DATASET}_relative.png"]
    for pattern in patterns:
        found = list(finished_run.glob(pattern))
        assert found and all(p.stat().st_size > 0 for p in found), pattern


def test_exported_subsets_are_vision_flan_records_again(finished_run):
    """A subset exported as records is the release's own records (task_name kept, the reader's metadata gone)."""
    raw = json.loads((finished_run / DATASET / "data" / "vision_flan" / "pool.json").read_text())
    for method in METHODS:
        subset = json.loads((finished_run / DATASET / "subsets" / method / "r0.5_s0.json").read_text())
        records = json.loads((finished_run / DATASET / "subsets" / method / "r0.5_s0.records.json").read_text())
        assert records == [raw[row] for row in sorted(subset["rows"])]
        assert len({r["task_name"] for r in records}) > 10


def test_the_table_has_every_run_and_benchmark(finished_run):
    with open(finished_run / "tables" / f"{DATASET}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["method"], float(r["ratio"])) for r in rows} == {("full", 1.0)} | {(m, 0.5) for m in METHODS}
    benchmarks = load_config(TINY, TINY_VISION_FLAN)["datasets"][DATASET]["benchmarks"]
    assert {r["benchmark"] for r in rows} == set(benchmarks)
    assert all(0 <= float(r["value"]) <= 100 for r in rows)
