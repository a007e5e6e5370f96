"""Proxy embeddings against a direct per-example recomputation; batch-size and shard invariance."""

from __future__ import annotations

import numpy as np
import torch

from selectbench.data.images import ImageLoader
from selectbench.features import ShardJob
from selectbench.features.embeddings import extract_shard
from selectbench.features.sharding import gather
from selectbench.models.build import load_checkpoint
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, SupervisedDataset

# measured max |difference| between batch sizes 1 and 4 on the tiny proxy is ~1e-7 (float32 matmul shapes
# differ with the padded width); a padding leak would move rows by O(0.1)
TOL = 1e-5


def _extract(tmp_path, tiny_data, tiny_config, proxy_run, n_shards, batch_size):
    files = []
    for shard in range(n_shards):
        out = tmp_path / f"b{batch_size}n{n_shards}" / f"s{shard}.npz"
        extract_shard(ShardJob(tiny_data, {"proxy_checkpoints": proxy_run["listing"]}, {},
                               tiny_config["models"]["proxy"], shard, n_shards, batch_size, out, device="cpu"))
        files.append(out)
    return gather(files, len(tiny_data.pool), tmp_path / f"b{batch_size}n{n_shards}.npz")


def test_embeddings_match_a_hand_computation(tmp_path, tiny_data, tiny_config, proxy_run):
    emb = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 1, 4)
    assert emb["covered"].all(), "every record, text-only included, is embedded"
    d = proxy_run["arch"]["text"]["hidden_size"]
    for key in ("last", "mean"):
        assert emb[key].shape == (len(tiny_data.pool), 1, d) and emb[key].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(emb[key][:, 0], axis=1), 1, rtol=1e-5)
    model, tokenizer, processor = load_checkpoint(proxy_run["checkpoints"][-1])
    template = make_template(tokenizer, model, tiny_config["models"]["proxy"]["template"])
    images = ImageLoader(tiny_data.image_root, processor)
    text_only = [i for i, r in enumerate(tiny_data.pool) if "image" not in r][:1]
    rows = [0] + text_only
    dataset = SupervisedDataset([tiny_data.pool[r] for r in rows], template, images)
    collate = Collator(tokenizer.pad_token_id, images)
    for i, row in enumerate(rows):
        batch = collate([dataset[i]])  # alone: no padding at all
        with torch.no_grad():
            states = model(**{k: v for k, v in batch.items() if k != "labels"},
                           output_hidden_states=True).hidden_states[-1][0].double().numpy()
        last, mean = states[-1], states.mean(0)
        np.testing.assert_allclose(emb["last"][row, 0], last / np.linalg.norm(last), atol=1e-5)
        np.testing.assert_allclose(emb["mean"][row, 0], mean / np.linalg.norm(mean), atol=1e-5)


def test_batch_size_and_shard_count_do_not_change_embeddings(tmp_path, tiny_data, tiny_config, proxy_run):
    one = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 1, 1)
    four = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 1, 4)
    two_shards = _extract(tmp_path, tiny_data, tiny_config, proxy_run, 2, 1)
    for key in ("last", "mean"):
        print(key, "max |b1 - b4| =", np.abs(one[key] - four[key]).max())
        np.testing.assert_allclose(one[key], four[key], atol=TOL, rtol=0)
        np.testing.assert_array_equal(one[key], two_shards[key])
