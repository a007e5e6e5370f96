"""semdedup and self_sup scored and selected through the score/select steps on the tiny pool, from real
proxy_embeddings features of the tiny proxy."""

from __future__ import annotations

import numpy as np
import pytest

from selectbench.features.embeddings import extract_shard
from selectbench.selection.registry import discover, expand
from selectbench.selection.run import score
from tests.features.conftest import proxy_run  # noqa: F401  (fixture: a tiny random-weight proxy on disk)
from tests.methods.conftest import METHODS, one_shard_feature, select_twice


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory, tiny_data, tiny_config, proxy_run):  # noqa: F811
    return one_shard_feature(extract_shard, tiny_data, tiny_config["models"]["proxy"], proxy_run["listing"],
                             tmp_path_factory.mktemp("emb"), "proxy_embeddings")


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
        _, meta = select_twice(tiny_data, instance, scores, ratio, tmp_path, 0, "deterministic given the seed")
        sizes.append(meta["details"])
    if method == "semdedup":  # K scaled to the pool: 10,000 × N / 665,298 (at least 1)
        assert sizes[0]["clusters"] == max(1, round(10_000 * len(tiny_data.pool) / 665_298))
        assert sizes[0]["epsilon"] is None or sizes[0]["epsilon"] >= (sizes[1]["epsilon"] or 0)
