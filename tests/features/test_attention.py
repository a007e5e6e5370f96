"""Text×image blocks against independent references: output_attentions (paper) and the released formula
recomputed by hand; singular values against numpy; padding never changes an example's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selectbench.data.images import ImageLoader
from selectbench.features import FEATURES
from selectbench.features.attention import BatchLayout, randomized_svd_pass, record_blocks, top_singular_values
from selectbench.features.trajectories import trajectories_for_checkpoint
from selectbench.models.build import load_checkpoint
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, SupervisedDataset


@pytest.fixture(scope="module")
def loaded(proxy_run, tiny_data, tiny_config):
    model, tokenizer, processor = load_checkpoint(proxy_run["checkpoints"][-1])
    model.eval()
    template = make_template(tokenizer, model, tiny_config["models"]["proxy"]["template"])
    images = ImageLoader(tiny_data.image_root, processor)
    records = [r for r in tiny_data.pool if "image" in r][:6]
    dataset = SupervisedDataset(records, template, images)
    collate = Collator(tokenizer.pad_token_id, images)
    batch = collate([dataset[i] for i in range(len(records))])
    assert (batch["attention_mask"] == 0).any(), "the batch should contain padding"
    return model, batch, collate, dataset


def _blocks(model, batch, attention, combine="sum", layers="all"):
    layout = BatchLayout.from_inputs(batch["input_ids"], batch["attention_mask"], model.config.image_token_id)
    with torch.no_grad(), record_blocks(model, attention, layers, combine) as rec:
        rec.reset(layout)
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
              pixel_values=batch["pixel_values"])
        return rec.result(), layout


def _example_positions(batch, b, image_token_id):
    valid = batch["attention_mask"][b].bool().numpy()
    ids = batch["input_ids"][b].numpy()
    image = np.flatnonzero((ids == image_token_id) & valid)
    text = np.flatnonzero(valid & (np.arange(len(ids)) > image.max()))
    return valid, image, text


def test_paper_block_matches_output_attentions(loaded):
    model, batch, _, _ = loaded
    blocks, layout = _blocks(model, batch, "paper", combine="concat")
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            attn = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")},
                         output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")
    for b in range(len(batch["input_ids"])):
        _, image, text = _example_positions(batch, b, model.config.image_token_id)
        for layer, weights in enumerate(attn):
            want = weights[b].mean(0)[text][:, image].numpy()
            got = blocks[b, layer, text - layout.row_start][:, :len(image)].numpy()
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_released_block_matches_the_released_formula(loaded):
    model, batch, _, _ = loaded
    blocks, layout = _blocks(model, batch, "released")
    with torch.no_grad():
        hidden = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")},
                       output_hidden_states=True).hidden_states
    layers = model.model.language_model.layers
    for b in range(len(batch["input_ids"])):
        valid, image, text = _example_positions(batch, b, model.config.image_token_id)
        total = 0
        for layer, module in enumerate(layers):
            with torch.no_grad():
                x = module.input_layernorm(hidden[layer][b:b + 1])
                q = module.self_attn.q_proj(x)[0].double().numpy()
                k = module.self_attn.k_proj(x)[0].double().numpy()
            # the release: softmax(K·Qᵀ/√width) over the last axis; here padding columns are excluded
            scores = (k @ q.T) / np.sqrt(q.shape[1])
            scores = scores[:, valid]
            probs = np.exp(scores - scores.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            columns = np.searchsorted(np.flatnonzero(valid), image)
            total = total + probs[text][:, columns]
        got = blocks[b, 0, text - layout.row_start][:, :len(image)].numpy()
        np.testing.assert_allclose(got, total, atol=1e-5)
        # nothing outside the example's own rows and columns
        mask = np.ones(blocks.shape[2:], bool)
        mask[np.ix_(text - layout.row_start, np.arange(len(image)))] = False
        assert not blocks[b, 0].numpy()[mask].any()


def _released_reference(model, example, k=5):
    """The release's formula for one example on its own (no padding), in float64: per layer softmax over the last
    axis of K·Qᵀ/√width from the full-width projections, rows from one token after the image block (its slice
    [:, 612:, 35:611]), image columns; blocks summed over layers; the sum of the top-k singular values."""
    inputs = {key: example[key] for key in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states
    ids = example["input_ids"][0].numpy()
    image = np.flatnonzero(ids == model.config.image_token_id)
    rows = np.arange(image.max() + 2, len(ids))
    total = 0
    for layer, module in enumerate(model.model.language_model.layers):
        with torch.no_grad():
            x = module.input_layernorm(hidden[layer])
            q = module.self_attn.q_proj(x)[0].double().numpy()
            key = module.self_attn.k_proj(x)[0].double().numpy()
        scores = key @ q.T / np.sqrt(q.shape[1])
        probs = np.exp(scores - scores.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        total = total + probs[rows][:, image]
    return np.linalg.svd(total, compute_uv=False)[:k].sum()


def test_released_trajectories_equal_the_releases_formula_one_example_at_a_time(loaded):
    model, batch, collate, dataset = loaded
    spec = FEATURES["attention_trajectories"].spec({})
    assert spec["attention"] == "released" and spec["skip_after_image"] == 1
    got = trajectories_for_checkpoint(model, [batch], spec, torch.device("cpu"))["sv"][:, 0].sum(-1)
    want = np.array([_released_reference(model, collate([dataset[b]])) for b in range(len(dataset))])
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("attention", ["released", "paper"])
def test_padding_does_not_change_an_example(loaded, attention):
    model, batch, collate, dataset = loaded
    together = top_singular_values(_blocks(model, batch, attention)[0], 5)
    for b in range(len(dataset)):
        alone = top_singular_values(_blocks(model, collate([dataset[b]]), attention)[0], 5)
        np.testing.assert_allclose(alone[0].numpy(), together[b].numpy(), rtol=1e-4, atol=1e-6)


def test_top_singular_values_match_numpy_and_ignore_zero_padding():
    rng = np.random.default_rng(0)
    a = rng.random((7, 4)).astype(np.float32)
    want = np.linalg.svd(a, compute_uv=False)
    padded = np.zeros((2, 12, 9), np.float32)
    padded[0, :7, :4] = a
    padded[1, 3:10, 2:6] = a
    got = top_singular_values(torch.from_numpy(padded), 6).numpy()
    for row in got:
        np.testing.assert_allclose(row[:4], want, rtol=1e-5)
        np.testing.assert_array_equal(row[4:], 0)  # rank 4: the rest is zero
    with randomized_svd_pass("randomized"):
        approx = top_singular_values(torch.from_numpy(padded), 2, svd="randomized").numpy()
    # q = k, no oversampling (the release's call): the leading value is close, the others are lower bounds
    np.testing.assert_allclose(approx[:, 0], want[0], rtol=1e-3)
    assert (approx <= want[:2] + 1e-5).all() and (approx[:, 1] > 0.9 * want[1]).all()


def test_randomized_svd_is_the_releases_call_seeded_once_per_pass():
    """torch.svd_lowrank(A, q=k) after one torch.manual_seed(42), batch after batch, as the release runs it."""
    blocks = [torch.from_numpy(np.random.default_rng(i).random((3, 12, 9)).astype(np.float32)) for i in range(2)]
    torch.manual_seed(42)
    want = [torch.svd_lowrank(b, q=5)[1] for b in blocks]
    torch.manual_seed(7)
    outside = torch.rand(1)
    torch.manual_seed(7)
    with randomized_svd_pass("randomized"):
        got = [top_singular_values(b, 5, svd="randomized") for b in blocks]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    assert torch.equal(torch.rand(1), outside), "the caller's RNG state is restored"


def test_bad_settings_are_rejected(loaded):
    model = loaded[0]
    with pytest.raises(ValueError, match="attention"):
        with record_blocks(model, "flash", "all", "sum"):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with record_blocks(model, "released", [5], "sum"):
            pass
    with pytest.raises(ValueError, match="svd"):
        top_singular_values(torch.zeros(1, 2, 2), 1, svd="lanczos")


@pytest.mark.parametrize("attention", ["released", "paper"])
def test_capture_leaves_the_model_outputs_unchanged(loaded, attention):
    model, batch, _, _ = loaded
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        plain = model(**inputs).logits
        layout = BatchLayout.from_inputs(batch["input_ids"], batch["attention_mask"], model.config.image_token_id)
        with record_blocks(model, attention, "all", "sum") as rec:
            rec.reset(layout)
            captured = model(**inputs).logits
    valid = batch["attention_mask"].bool()
    torch.testing.assert_close(captured[valid], plain[valid], atol=1e-5, rtol=1e-5)
    assert model.model.language_model.config._attn_implementation == "sdpa"
