"""The paper-scale proxy path on tiny stand-ins: a TinyLLaVA-class proxy assembled from a StableLM LM (partial
rotary, LayerNorm, a pad that is its eos) and a CLIPModel with a random connector, fully fine-tuned with kept
checkpoints, then every proxy feature extracted from it exactly as the DAG does at scale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from selectbench.features import ShardJob
from selectbench.features.sharding import gather
from selectbench.training.stages import checkpoint_dirs, finetune, train_base
from tests.models.conftest import clip_dir, pretrained_cfg, stablelm_dir  # noqa: F401 (fixtures)

TEMPLATE = {"system": "A chat between a curious user and an artificial intelligence assistant.", "max_length": 256}
FINETUNE = {"finetune": "full", "trainable": ["projector", "language_model"], "epochs": 1, "batch_size": 16,
            "lr": 1e-3, "warmup_ratio": 0.03, "scheduler": "cosine", "checkpoints": 2}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, tiny_data, stablelm_dir, clip_dir):  # noqa: F811
    root = tmp_path_factory.mktemp("stablelm_proxy")
    cfg = {"pretrained": pretrained_cfg(stablelm_dir, clip_dir, None), "template": TEMPLATE, "finetune": FINETUNE}
    train_base(tiny_data, None, cfg, 0, root / "base", 1)
    finetune(tiny_data, root / "base", None, cfg, 0, root / "finetune", 1)
    listing = root / "checkpoints.json"
    listing.write_text(json.dumps([str(p) for p in checkpoint_dirs(root / "finetune")]))
    return {"cfg": cfg, "listing": listing, "base": root / "base", "root": root}


def _extract(module, tiny_data, inputs, spec, cfg, out, batch_size, shards=1):
    files = []
    for shard in range(shards):
        path = out / f"shard{shard}.npz"
        module.extract_shard(ShardJob(tiny_data, inputs, spec, cfg, shard, shards, batch_size, path, device="cpu"))
        files.append(path)
    return gather(files, len(tiny_data.pool), out / "gathered.npz")


def test_checkpoints_are_kept_for_the_trajectories(proxy):
    assert len(json.loads(proxy["listing"].read_text())) == 2


@pytest.mark.parametrize("attention", ["released", "paper"])
def test_trajectories_do_not_depend_on_batching(proxy, tiny_data, tmp_path, attention):
    from selectbench.features import trajectories

    spec = {"attention": attention, "combine": "sum", "k": 3, "layers": "all", "svd": "exact"}
    inputs = {"proxy_checkpoints": proxy["listing"]}
    one = _extract(trajectories, tiny_data, inputs, spec, proxy["cfg"], tmp_path / "b1", 1)
    many = _extract(trajectories, tiny_data, inputs, spec, proxy["cfg"], tmp_path / "b16", 16, shards=2)
    images = np.array(["image" in r for r in tiny_data.pool])
    assert (one["covered"] == images).all() and (many["covered"] == images).all()
    sv = one["sv"][images]
    assert sv.shape[1] == 2 and np.isfinite(sv).all() and (sv > 0).any()
    np.testing.assert_allclose(many["sv"][images], sv, rtol=2e-3, atol=1e-5)


def test_token_statistics_and_gradients_run_on_the_assembled_proxy(proxy, tiny_data, tmp_path):
    from selectbench.features import gradients, token_stats

    stats = _extract(token_stats, tiny_data, {"proxy_checkpoints": proxy["listing"]}, {}, proxy["cfg"],
                     tmp_path / "stats", 16)
    assert stats["covered"].all() and np.isfinite(stats["nll"]).all() and (stats["nll"] > 0).all()

    warm_dir = tmp_path / "warm"
    # from the fine-tune's first checkpoint (paper scale's start: the connector is trained there)
    spec = {"fraction": 0.1, "epochs": 1, "lr": 1e-3, "lora_r": 4, "seed": 0, "start": "proxy_checkpoint"}
    start = gradients.warmup_start(spec, proxy["base"], proxy["listing"])
    gradients.run_warmup(tiny_data, start, proxy["cfg"], spec, warm_dir)
    warm = tmp_path / "warmup.json"
    warm.write_text(json.dumps({"model": str(start), "warmup": str(warm_dir)}))
    grads = _extract(gradients, tiny_data, {"gradient_warmup": warm}, {"dim": 64}, proxy["cfg"],
                     tmp_path / "grads", 16)
    assert grads["covered"].all() and np.isfinite(grads["projected"]).all()
    assert (np.linalg.norm(grads["projected"].reshape(len(tiny_data.pool), -1), axis=1) > 0).all()
