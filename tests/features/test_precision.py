"""features.dtype: the proxy's feature passes load its weights in the configured precision (checked on the
weights and on an activation the pass computes), record it in the feature file, and half-precision trajectories
agree with float32 ones within a stated tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selectbench.features import ShardJob
from selectbench.features.passes import pass_dtype
from selectbench.features.sharding import gather

# Largest relative error of an example's trajectory point (sum of its top-5 singular values, `released`) against
# float32, measured on the tiny stand-in proxy over 3 checkpoints: bfloat16 1.5e-3 (median 2.1e-4), float16 1.8e-4
# (median 2.5e-5); `paper` attention 9.4e-4 and 7.0e-5. The tolerances leave a margin of 3x (bfloat16) and 5x
# (float16); docs/paper-scale.md states them.
TOLERANCE = {"bfloat16": 5e-3, "float16": 1e-3}


def _extract(module, tmp_path, tiny_data, tiny_config, inputs, dtype, name):
    files = []
    for shard in range(2):
        out = tmp_path / name / f"shard{shard}.npz"
        module.extract_shard(ShardJob(tiny_data, inputs, {}, tiny_config["models"]["proxy"], shard, 2, 8, out,
                                      device="cpu", dtype=dtype))
        files.append(out)
    return gather(files, len(tiny_data.pool), tmp_path / f"{name}.npz")


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory, tiny_data, tiny_config, proxy_run):
    """Trajectories of the tiny proxy's checkpoints in each precision, and the dtypes the pass computed in."""
    from selectbench.features import trajectories as module

    tmp = tmp_path_factory.mktemp("precision")
    seen = {}
    original = module.trajectories_for_checkpoint

    def spy(model, batches, spec, device, desc=""):
        q_proj = model.model.language_model.layers[0].self_attn.q_proj
        handle = q_proj.register_forward_hook(lambda _m, _i, out: seen.setdefault(current, set()).add(out.dtype))
        try:
            return original(model, batches, spec, device, desc)
        finally:
            handle.remove()

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "trajectories_for_checkpoint", spy)
        for current in ("float32", "bfloat16", "float16"):
            out[current] = _extract(module, tmp, tiny_data, tiny_config, {"proxy_checkpoints": proxy_run["listing"]},
                                    current, current)
    return out, seen


def test_the_pass_computes_in_the_configured_dtype_and_says_so(trajectories):
    arrays, seen = trajectories
    for name in ("float32", "bfloat16", "float16"):
        assert seen[name] == {pass_dtype(name)}, f"features.dtype {name}: q_proj ran in {seen[name]}"
        assert str(arrays[name]["meta_dtype"]) == name
    assert arrays["bfloat16"]["sv"].dtype == np.float32, "stored features stay float32"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_trajectories_agree_with_float32(trajectories, dtype):
    arrays, _ = trajectories
    ref, half = arrays["float32"], arrays[dtype]
    image = ref["covered"]
    np.testing.assert_array_equal(half["covered"], image)
    np.testing.assert_array_equal(half["n_text"], ref["n_text"])
    point_ref, point_half = ref["sv"][image].sum(-1), half["sv"][image].sum(-1)  # the released trajectory point
    rel = np.abs(point_half - point_ref) / np.abs(point_ref)
    assert rel.max() < TOLERANCE[dtype], f"{dtype}: max relative error {rel.max():.2e}, median {np.median(rel):.2e}"
    assert rel.max() > 0, "the half-precision pass must really differ from float32"
    # the answer loss the same pass stores (logits cast to float32 before the cross-entropy)
    np.testing.assert_allclose(half["loss"][image], ref["loss"][image], rtol=20 * TOLERANCE[dtype])


def test_token_statistics_load_the_configured_dtype(tmp_path, tiny_data, tiny_config, proxy_run, monkeypatch):
    from selectbench.features import token_stats
    from selectbench.models import build

    loaded = []
    original = build.load_checkpoint  # the one-checkpoint passes load through features.passes.pool_pass
    monkeypatch.setattr(build, "load_checkpoint",
                        lambda *a, **k: loaded.append(k.get("dtype")) or original(*a, **k))
    stats = _extract(token_stats, tmp_path, tiny_data, tiny_config, {"proxy_checkpoints": proxy_run["listing"]},
                     "bfloat16", "stats")
    assert loaded == [torch.bfloat16, torch.bfloat16] and str(stats["meta_dtype"]) == "bfloat16"
