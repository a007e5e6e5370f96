"""The XMAS paper's comparison methods end to end through the real snakemake CLI on the tiny pool: each scores
(with the shared proxy features, the full-data target or Self-Filter's jointly trained score net), selects,
trains, evaluates and appears in the tables and the cost table (config/comparison.yaml runs the same set on the
embedded default)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY, load_config, run_standalone_dag

COMPARISON = yaml.safe_load((ROOT / "config" / "comparison.yaml").read_text())["methods"]
# the tiny pool (240 examples) wants small K; the 2-layer proxy has layers 0 and 1
METHODS = {"random": {}, "semdedup": {"clusters": 4}, "self_sup": {"clusters": 4}, "d2_pruning": {},
           "coincide": {"clusters": 4, "layers": [[0, 1]]}, "hl": {}, "perplexity": {"model": "target_full"},
           "self_filter": {}}  # perplexity's proxy reading is the default DAG's (test_dag)
LABELS = {"random": "random", "semdedup": "semdedup", "self_sup": "self_sup", "d2_pruning": "d2_pruning",
          "coincide": "coincide__layers-0+1", "hl": "hl", "perplexity": "perplexity", "self_filter": "self_filter"}
# scored after a training on the whole pool: their selection alone costs at least one full-data training
AFTER_FULL_TRAINING = ("hl", "perplexity", "self_filter")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("comparison_dag")
    cfg = load_config(TINY)
    cfg.update(standalone=True, methods=METHODS)
    cfg["features"]["shards"] = 1  # sharding is test_dag's
    return run_standalone_dag(workdir, cfg, timeout=1200)


def test_the_comparison_config_names_every_new_method():
    assert set(COMPARISON) == set(METHODS) - {"random"}


def test_every_comparison_method_is_in_the_tables(finished_run):
    with open(finished_run / "tables" / "digits.csv", newline="") as fh:
        methods = {row["method"] for row in csv.DictReader(fh)}
    assert methods == {*LABELS.values(), "full"}
    md = (finished_run / "tables" / "digits.md").read_text()
    assert all(label in md for label in LABELS.values())
    assert (finished_run / "plots" / "digits_relative.png").stat().st_size > 0


def test_each_subset_has_exactly_n_distinct_rows(finished_run):
    import json

    for label in LABELS.values():
        subset = json.loads((finished_run / "digits" / "subsets" / label / "r0.5_s0.json").read_text())
        assert len(subset["rows"]) == len(set(subset["rows"])) == 120, label


def test_scoring_with_a_full_data_training_costs_more_than_that_training(finished_run):
    """HL and MP as the XMAS paper scores them, and Self-Filter, train on the whole pool before selecting: the cost
    table counts that training in their selection (selection / full training ≥ 1: no speed-up)."""
    import pandas as pd

    costs = pd.read_csv(finished_run / "tables" / "digits_costs.csv").set_index("method")
    for label in AFTER_FULL_TRAINING:
        assert costs.loc[label, "selection_vs_full_s"] >= 1, label
