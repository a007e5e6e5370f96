"""COINCIDE features: against a hand computation from the o_proj outputs of one unpadded example; the same for
any batch size and shard count; text-only records get a zero image half."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selectbench.data.images import ImageLoader
from selectbench.features import ShardJob
from selectbench.features.coincide import chosen_layers, extract_shard
from selectbench.features.sharding import gather
from selectbench.models.build import load_checkpoint
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, SupervisedDataset

SPEC = {"layers": [0, 1]}  # the tiny proxy has 2 layers
BATCH_TOLERANCE = 1e-6  # absolute; features lie in [-1/√(2L), 1/√(2L)] = [-0.5, 0.5]


def _extract(tmp_path, tiny_data, tiny_config, proxy_run, n_shards, batch_size):
    files = []
    for shard in range(n_shards):
        out = tmp_path / f"b{batch_size}n{n_shards}" / f"s{shard}.npz"
        extract_shard(ShardJob(tiny_data, {"proxy_checkpoints": proxy_run["listing"]}, SPEC,
                               tiny_config["models"]["proxy"], shard, n_shards, batch_size, out, device="cpu"))
        files.append(out)
    return gather(files, len(tiny_data.pool), tmp_path / f"b{batch_size}n{n_shards}.npz")


@pytest.fixture(scope="module")
def features(tmp_path_factory, tiny_data, tiny_config, proxy_run):
    tmp = tmp_path_factory.mktemp("coincide")
    return {(b, s): _extract(tmp, tiny_data, tiny_config, proxy_run, s, b) for b, s in ((4, 1), (1, 1), (4, 2))}


def _by_hand(model, batch, layers):
    """The release's recipe for one unpadded example, from its own hooks, in float64."""
    seen = {}
    handles = [model.model.language_model.layers[i].self_attn.o_proj.register_forward_hook(
        lambda _m, _i, out, i=i: seen.__setitem__(i, out[0].double())) for i in layers]
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"})
    for h in handles:
        h.remove()
    ids = batch["input_ids"][0]
    image = (ids == model.config.image_token_id).nonzero().flatten()
    text = torch.arange(int(image.max()) + 1, len(ids)) if len(image) else torch.arange(len(ids))
    out = []
    for i in layers:
        for pos in (image, text):
            if len(pos) == 0:
                out.append(np.zeros(seen[i].shape[-1]))
                continue
            v = torch.tanh(seen[i][pos].mean(0)).numpy()
            out.append(v / np.linalg.norm(v))
    return np.concatenate(out) / np.sqrt(2 * len(layers))


def test_features_match_a_hand_computation(features, tiny_data, tiny_config, proxy_run):
    got = features[(4, 1)]
    assert got["covered"].all() and got["coincide"].shape == (len(tiny_data.pool), 1, 2 * 2 * 32)
    model, tokenizer, processor = load_checkpoint(proxy_run["checkpoints"][-1])
    model.eval()
    template = make_template(tokenizer, model, tiny_config["models"]["proxy"]["template"])
    images = ImageLoader(tiny_data.image_root, processor)
    text_only = [i for i, r in enumerate(tiny_data.pool) if "image" not in r][:1]
    rows = [0, 1] + text_only
    dataset = SupervisedDataset([tiny_data.pool[r] for r in rows], template, images)
    collate = Collator(tokenizer.pad_token_id, images)
    for i, row in enumerate(rows):
        want = _by_hand(model, collate([dataset[i]]), [0, 1])
        np.testing.assert_allclose(got["coincide"][row, 0], want, atol=1e-5)
        image_half = got["coincide"][row, 0].reshape(2, 2, 32)[:, 0]
        if row in text_only:
            assert not image_half.any() and got["n_image"][row, 0] == 0
        else:
            np.testing.assert_allclose(np.linalg.norm(got["coincide"][row, 0]), 1.0, rtol=1e-5)
    assert text_only, "the tiny pool should have a text-only record"


def test_same_features_for_any_batch_size_and_shard_count(features):
    np.testing.assert_array_equal(features[(4, 1)]["coincide"], features[(4, 2)]["coincide"])
    np.testing.assert_allclose(features[(4, 1)]["coincide"], features[(1, 1)]["coincide"], rtol=0,
                               atol=BATCH_TOLERANCE)
    for key in ("n_image", "n_text"):
        np.testing.assert_array_equal(features[(4, 1)][key], features[(1, 1)][key])


def test_layers_are_checked_against_the_proxy_depth():
    assert chosen_layers([3, -1, 1], 4) == [1, 3]
    with pytest.raises(ValueError, match="out of range"):
        chosen_layers([3, 7, 11, 15, 19], 2)
