"""Proxy answer-token statistics against a direct per-example recomputation; shard invariance."""

from __future__ import annotations

import numpy as np
import torch

from selectbench.features import ShardJob
from selectbench.data.images import ImageLoader
from selectbench.features.sharding import gather
from selectbench.features.token_stats import extract_shard, extract_target_shard, token_statistics
from selectbench.models.build import load_checkpoint
from selectbench.models.conversation import IGNORE_INDEX
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, SupervisedDataset


def _extract(tmp_path, tiny_data, tiny_config, proxy_run, n_shards):
    files = []
    for shard in range(n_shards):
        out = tmp_path / f"n{n_shards}" / f"s{shard}.npz"
        extract_shard(ShardJob(tiny_data, {"proxy_checkpoints": proxy_run["listing"]}, {}, tiny_config["models"]["proxy"],
                               shard, n_shards, 8, out, device="cpu"))
        files.append(out)
    return gather(files, len(tiny_data.pool), tmp_path / f"n{n_shards}.npz")


def test_statistics_match_a_direct_recomputation(tmp_path, tiny_data, tiny_config, proxy_run):
    stats = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 1)
    assert stats["covered"].all(), "every record, text-only included, is scored"
    model, tokenizer, processor = load_checkpoint(proxy_run["checkpoints"][-1])
    template = make_template(tokenizer, model, tiny_config["models"]["proxy"]["template"])
    images = ImageLoader(tiny_data.image_root, processor)
    text_only = [i for i, r in enumerate(tiny_data.pool) if "image" not in r][:2]
    rows = [0, 1, 2] + text_only
    dataset = SupervisedDataset([tiny_data.pool[r] for r in rows], template, images)
    collate = Collator(tokenizer.pad_token_id, images)
    for i, row in enumerate(rows):
        batch = collate([dataset[i]])  # alone: no padding at all
        with torch.no_grad():
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0].double()
        labels = batch["labels"][0]
        positions = (labels[1:] != IGNORE_INDEX).nonzero().flatten()
        p = torch.softmax(logits[positions], -1).numpy()
        y = labels[1:][positions].numpy()
        onehot = np.eye(p.shape[1])[y]
        nll = -np.log(p[np.arange(len(y)), y]).mean()
        el2n = np.linalg.norm(p - onehot, axis=1).mean()
        margin = (p[np.arange(len(y)), y] - np.where(onehot == 1, -np.inf, p).max(axis=1)).mean()
        assert stats["n_answer"][row, 0] == len(y)
        np.testing.assert_allclose([stats["nll"][row, 0], stats["el2n"][row, 0]], [nll, el2n], rtol=1e-4)
        np.testing.assert_allclose(stats["margin"][row, 0], margin, rtol=1e-4, atol=1e-6)


def test_shard_count_does_not_change_statistics(tmp_path, tiny_data, tiny_config, proxy_run):
    one = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 1)
    two = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 2)
    for key in ("nll", "el2n", "margin", "n_answer"):
        np.testing.assert_array_equal(one[key], two[key])


def test_margin_by_hand_on_a_small_logits_tensor():
    """margin = mean over answer tokens of p(target) − max p(other); prompt and padding tokens never count, an
    example without answer tokens is NaN. Logits at position t predict the label at t + 1."""
    ig = IGNORE_INDEX
    logits = torch.full((3, 4, 3), -1e4)
    logits[0, 0] = torch.tensor([0.0, 0.0, 0.0])               # predicts label[0, 1] (prompt: ignored)
    logits[0, 1] = torch.log(torch.tensor([0.5, 0.3, 0.2]))    # predicts 0: 0.5 − 0.3
    logits[0, 2] = torch.log(torch.tensor([0.1, 0.6, 0.3]))    # predicts 2: 0.3 − 0.6
    logits[1, 0] = torch.log(torch.tensor([0.25, 0.25, 0.5]))  # predicts 1: 0.25 − 0.5 (ties among the others)
    logits[1, 1] = torch.log(torch.tensor([0.4, 0.4, 0.2]))    # predicts 0: 0.4 − 0.4 (a tie with the target)
    logits[1, 2] = torch.log(torch.tensor([0.9, 0.05, 0.05]))  # predicts padding: ignored
    labels = torch.tensor([[ig, ig, 0, 2], [ig, 1, 0, ig], [ig, ig, ig, ig]])
    stats = token_statistics(logits, labels)
    want = [((0.5 - 0.3) + (0.3 - 0.6)) / 2, ((0.25 - 0.5) + 0.0) / 2]
    np.testing.assert_allclose(stats["margin"][:2].numpy(), want, atol=1e-6)
    assert torch.isnan(stats["margin"][2]) and stats["n_answer"].tolist() == [2, 2, 0]


def test_target_statistics_come_from_the_full_data_runs_published_model(tmp_path, tiny_data, tiny_config, proxy_run):
    """target_token_stats reads the model published beside the target_full artifact (the reference run's summary):
    the same numbers as the proxy pass over that very model."""
    import json

    import pytest

    run = tmp_path / "full_run"
    run.mkdir()
    (run / "model").symlink_to(proxy_run["model_dir"], target_is_directory=True)
    (run / "train_summary.json").write_text("{}")
    cfg = tiny_config["models"]["proxy"]
    extract_target_shard(ShardJob(tiny_data, {"target_full": run / "train_summary.json"}, {}, cfg, 0, 1, 8,
                                  tmp_path / "target.npz", device="cpu"))
    listing = tmp_path / "listing.json"
    listing.write_text(json.dumps([str(proxy_run["model_dir"])]))
    extract_shard(ShardJob(tiny_data, {"proxy_checkpoints": listing}, {}, cfg, 0, 1, 8, tmp_path / "proxy.npz",
                           device="cpu"))
    target = gather([tmp_path / "target.npz"], len(tiny_data.pool), tmp_path / "t.npz")
    proxy = gather([tmp_path / "proxy.npz"], len(tiny_data.pool), tmp_path / "p.npz")
    for key in ("nll", "el2n", "margin", "n_answer"):
        np.testing.assert_array_equal(target[key], proxy[key])
    (run / "model").unlink()
    with pytest.raises(FileNotFoundError, match="no published model"):
        extract_target_shard(ShardJob(tiny_data, {"target_full": run / "train_summary.json"}, {}, cfg, 0, 1, 8,
                                      tmp_path / "again.npz", device="cpu"))
