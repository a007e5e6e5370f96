"""Trajectory extraction: shapes, shard-count invariance (bit for bit), resumption, and the gather."""

from __future__ import annotations

import numpy as np
import pytest

from selectbench.features import ShardJob
from selectbench.features import FEATURES, spec_label
from selectbench.features.sharding import gather, plan_batches, run_parts, shard_batches
from selectbench.features.trajectories import extract_shard


def _extract(tmp_path, tiny_data, tiny_config, proxy_run, n_shards, spec=None):
    files = []
    for shard in range(n_shards):
        out = tmp_path / f"n{n_shards}" / f"shard{shard}.npz"
        extract_shard(ShardJob(tiny_data, {"proxy_checkpoints": proxy_run["listing"]}, spec or {},
                               tiny_config["models"]["proxy"], shard, n_shards, 8, out, threads=1, device="cpu"))
        files.append(out)
    return gather(files, len(tiny_data.pool), tmp_path / f"n{n_shards}.npz")


def test_gathered_trajectories_do_not_depend_on_the_shard_count(tmp_path, tiny_data, tiny_config, proxy_run,
                                                                 monkeypatch):
    one = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 1)
    monkeypatch.setattr("selectbench.features.passes.CACHE_EXAMPLES", 0)  # images re-read per checkpoint
    three = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 3)
    has_image = np.array(["image" in r for r in tiny_data.pool])
    np.testing.assert_array_equal(one["covered"], has_image)
    assert one["sv"].shape == (len(tiny_data.pool), 3, 1, 5)  # T checkpoints, layers summed, top-5
    assert np.isnan(one["sv"][~has_image]).all() and np.isfinite(one["sv"][has_image]).all()
    assert (one["sv"][has_image] >= 0).all()
    assert (np.diff(one["sv"][has_image], axis=-1) <= 1e-6).all(), "singular values must be descending"
    assert not np.allclose(one["sv"][has_image][:, 0], one["sv"][has_image][:, 2]), "checkpoints differ"
    for key in ("sv", "loss", "n_text", "n_image", "covered"):
        np.testing.assert_array_equal(one[key], three[key])
    assert (one["n_image"][has_image] == 9).all() and (one["n_text"][has_image] > 0).all()


def test_concat_keeps_one_block_per_layer(tmp_path, tiny_data, tiny_config, proxy_run):
    spec = {"combine": "concat", "attention": "paper", "layers": [0, -1]}
    merged = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 2, spec)
    assert merged["sv"].shape[1:] == (3, 2, 5)


def test_batches_are_planned_for_the_pool_not_the_shard(tiny_data):
    rows = [i for i, r in enumerate(tiny_data.pool) if "image" in r]
    batches = plan_batches(tiny_data.pool, rows, 8)
    for n in (1, 2, 5):
        dealt = [b for s in range(n) for b in shard_batches(batches, s, n)]
        assert sorted(np.concatenate(dealt).tolist()) == rows
        assert {tuple(b) for b in dealt} == {tuple(b) for b in batches}
    with pytest.raises(ValueError, match="shard 3"):
        shard_batches(batches, 3, 3)


def test_parts_resume_after_an_interruption(tmp_path):
    calls = []

    def compute(part):
        calls.append(part)
        if part == "c" and len(calls) == 3:
            raise KeyboardInterrupt  # killed while computing the third part
        return {"x": np.array([len(part)])}

    with pytest.raises(KeyboardInterrupt):
        run_parts(["a", "bb", "c"], compute, tmp_path / "parts")
    out = run_parts(["a", "bb", "c"], compute, tmp_path / "parts")
    assert calls == ["a", "bb", "c", "c"], "finished parts must not be recomputed"
    assert out["bb"]["x"][0] == 2


def test_gather_rejects_overlapping_shards(tmp_path):
    a = tmp_path / "a.npz"
    np.savez(a, rows=np.array([0, 1]), v=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="already covered"):
        gather([a, a], 3, tmp_path / "out.npz")


def test_feature_specs_validate_and_name_themselves():
    feature = FEATURES["attention_trajectories"]
    spec = feature.spec({"k": 3})
    assert spec_label(spec) == "attention-released_combine-sum_k-3_layers-all_skip_after_image-1_svd-exact"
    assert spec_label(feature.spec({"layers": [0, -1]})).endswith("layers-0+-1_skip_after_image-1_svd-exact")
    with pytest.raises(ValueError, match="no setting"):
        feature.spec({"heads": 2})
    with pytest.raises(ValueError, match="combine"):
        feature.spec({"combine": "mean"})
