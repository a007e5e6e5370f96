"""semdedup and self_sup scored and selected through the score/select steps on the tiny pool, from real
proxy_embeddings features of the tiny proxy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selectbench.features import ShardJob
from selectbench.features.embeddings import extract_shard
from selectbench.features.sharding import gather
from selectbench.selection.registry import discover, expand
from selectbench.selection.run import score, select
from tests.features.conftest import proxy_run  # noqa: F401  (fixture: a tiny random-weight proxy on disk)

METHODS = str(Path(__file__).resolve().parents[2] / "methods")


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory, tiny_data, tiny_config, proxy_run):  # noqa: F811
    tmp = tmp_path_factory.mktemp("emb")
    extract_shard(ShardJob(tiny_data, {"proxy_checkpoints": proxy_run["listing"]}, {},
                           tiny_config["models"]["proxy"], 0, 1, 8, tmp / "s0.npz", device="cpu"))
    gather([tmp / "s0.npz"], len(tiny_data.pool), tmp / "proxy_embeddings.npz")
    return tmp / "proxy_embeddings.npz"


@pytest.mark.parametrize("method, overrides", [("semdedup", {"device": "cpu"}),
                                               ("self_sup", {"device": "cpu", "clusters": 8})])
def test_score_and_select_on_the_tiny_pool(tmp_path, tiny_data, embeddings, method, overrides):
    instance = expand({method: overrides}, discover(METHODS))[0]
    scores = tmp_path / "scores.npz"
    score(METHODS, tiny_data, "digits", instance, {"proxy_embeddings": str(embeddings)}, scores)
    with np.load(scores) as z, np.load(embeddings) as f:
        key = instance.param_dict["embedding"]
        np.testing.assert_allclose(z["embedding"], f[key][:, 0], atol=1e-6)
    sizes = []
    for ratio in (0.1, 0.5):
        out = tmp_path / f"r{ratio}.json"
        meta = select(METHODS, tiny_data, "digits", instance, scores, ratio, 0, out)
        rows = json.loads(out.read_text())["rows"]
        assert len(rows) == len(set(rows)) == meta["size"] == round(ratio * len(tiny_data.pool))
        select(METHODS, tiny_data, "digits", instance, scores, ratio, 0, tmp_path / "again.json")
        assert json.loads((tmp_path / "again.json").read_text())["rows"] == rows, "deterministic given the seed"
        sizes.append(meta["details"])
    if method == "semdedup":  # K scaled to the pool: 10,000 × N / 665,298 (at least 1)
        assert sizes[0]["clusters"] == max(1, round(10_000 * len(tiny_data.pool) / 665_298))
        assert sizes[0]["epsilon"] is None or sizes[0]["epsilon"] >= (sizes[1]["epsilon"] or 0)
