"""The clip_score pipeline: a tiny CLIP trained and saved in transformers' format, loaded by path as a
pretrained one would be, and the per-record cosine against a direct recomputation; text-only is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from selectbench.features import ShardJob
from selectbench.features.clip_score import extract_embeddings_shard, extract_shard
from selectbench.features.sharding import gather
from selectbench.embedded.clip import train_clip
from selectbench.models.clip import encode_texts, load_clip, record_text


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, tiny_data, tiny_config):
    from selectbench.embedded.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("clip")
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], root / "tok")
    cfg = {**tiny_config["clip"], "epochs": 2}
    summary = train_clip(tiny_data, root / "tok", cfg, 0, root / "model", threads=1)
    assert summary["pairs"] == len(tiny_data.captions()) and np.isfinite(summary["final_loss"])
    (root / "model.json").write_text(json.dumps({"source": str(root / "model")}))
    return root


def test_scores_match_a_direct_recomputation(tmp_path, tiny_data, tiny_config, clip_dir):
    files = [tmp_path / f"s{i}.npz" for i in range(2)]
    for i, f in enumerate(files):
        extract_shard(ShardJob(tiny_data, {"clip_model": clip_dir / "model.json"}, {}, {}, i, 2, 8, f, device="cpu"))
    scores = gather(files, len(tiny_data.pool), tmp_path / "all.npz")["clip_score"][:, 0]
    has_image = np.array(["image" in r for r in tiny_data.pool])
    assert np.isnan(scores[~has_image]).all() and np.isfinite(scores[has_image]).all()
    assert (np.abs(scores[has_image]) <= 1 + 1e-6).all()
    model, tokenizer, processor = load_clip(clip_dir / "model")
    from selectbench.data.images import ImageLoader

    images = ImageLoader(tiny_data.image_root, processor)
    for row in np.flatnonzero(has_image)[:3]:
        record = tiny_data.pool[row]
        with torch.no_grad():
            out = model(pixel_values=images.pixel_values([images.load(record["image"])]),
                        **encode_texts(tokenizer, [record_text(record)], 77))
        want = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).item()
        assert scores[row] == pytest.approx(want, abs=1e-5)


def test_embeddings_are_unit_image_and_text_halves_and_agree_with_the_scores(tmp_path, tiny_data, clip_dir):
    """clip_embeddings (Self-Filter's score-net input): [image, text] each of unit norm, zeros for the image of a
    text-only record; their halves' dot product is the clip_score; shard count changes nothing."""
    pointer = {"clip_model": clip_dir / "model.json"}
    score_file = tmp_path / "scores.npz"
    extract_shard(ShardJob(tiny_data, pointer, {}, {}, 0, 1, 8, score_file, device="cpu"))
    scores = gather([score_file], len(tiny_data.pool), tmp_path / "scores_all.npz")["clip_score"][:, 0]
    merged = []
    for shards in (1, 2):
        files = [tmp_path / f"e{shards}_{i}.npz" for i in range(shards)]
        for i, f in enumerate(files):
            extract_embeddings_shard(ShardJob(tiny_data, pointer, {}, {}, i, shards, 8, f, device="cpu"))
        merged.append(gather(files, len(tiny_data.pool), tmp_path / f"e{shards}.npz")["embedding"][:, 0])
    np.testing.assert_array_equal(merged[0], merged[1])
    emb = merged[0]
    d = emb.shape[1] // 2
    image, text = emb[:, :d], emb[:, d:]
    has_image = np.array(["image" in r for r in tiny_data.pool])
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image[has_image], axis=1), 1, rtol=1e-5)
    assert (image[~has_image] == 0).all() and (~has_image).any()
    np.testing.assert_allclose((image * text).sum(1)[has_image], scores[has_image], atol=1e-5)


def test_text_is_truncated_to_the_context_and_ends_with_eos(clip_dir):
    _, tokenizer, _ = load_clip(clip_dir / "model")
    enc = encode_texts(tokenizer, ["1 2 3 " * 100, "short"], 77)
    assert enc["input_ids"].shape[1] == 77
    ends = enc["attention_mask"].sum(1) - 1
    assert (enc["input_ids"][torch.arange(2), ends] == tokenizer.eos_token_id).all()


def test_the_configured_dtype_is_used_and_scores_stay_close(tmp_path, tiny_data, clip_dir):
    """features.dtype reaches CLIP too: its weights in bfloat16, the cosine still float32, close to float32's."""
    from selectbench.features import clip_score

    seen = []
    original = clip_score.clip_scores

    def spy(model, *args, **kwargs):
        seen.append(model.text_projection.weight.dtype)
        return original(model, *args, **kwargs)

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clip_score, "clip_scores", spy)
        for dtype in ("float32", "bfloat16"):
            f = tmp_path / f"{dtype}.npz"
            extract_shard(ShardJob(tiny_data, {"clip_model": clip_dir / "model.json"}, {}, {}, 0, 1, 8, f,
                                   device="cpu", dtype=dtype))
            out[dtype] = gather([f], len(tiny_data.pool), tmp_path / f"{dtype}_all.npz")
    assert seen == [torch.float32, torch.bfloat16]
    assert str(out["bfloat16"]["meta_dtype"]) == "bfloat16"
    has_image = np.array(["image" in r for r in tiny_data.pool])
    diff = np.abs(out["bfloat16"]["clip_score"][has_image] - out["float32"]["clip_score"][has_image])
    assert diff.max() < 1e-2  # measured: 3.4e-3 at most (median 6.6e-4) on this tiny CLIP
