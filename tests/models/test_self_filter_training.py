"""Self-Filter's stage 1: the weighted loss and the score net's gradient against hand computations, and the joint
training on the tiny pool (score net saved, resumed after a kill to the uninterrupted run's weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from selectbench.data.images import ImageLoader
from selectbench.models.build import load_model
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, RowDataset
from selectbench.training.self_filter import SCORE_NET_FILE, ScoreNetWeighting, train_score_net
from selectbench.training.stages import pretrained_base
from selectbench.training.train import _WeightedLoss
from tests.conftest import TINY, load_config


@pytest.fixture(scope="module")
def target(tmp_path_factory, tiny_data):
    """The shipped pretrained target (the default's), published as a base model."""
    cfg = load_config(TINY)["models"]["target"]
    out = tmp_path_factory.mktemp("self_filter_base")
    pretrained_base(tiny_data, None, cfg, 0, out, 1)
    return out, cfg


def _batch(target, tiny_data, rows):
    model, tokenizer, processor = load_model(target[0] / "model")
    template = make_template(tokenizer, model, target[1]["template"])
    images = ImageLoader(tiny_data.image_root, processor)
    dataset = RowDataset(tiny_data.pool, template, images)
    return model, Collator(tokenizer.pad_token_id, images)([dataset[r] for r in rows])


class _Loss(_WeightedLoss):
    def __init__(self, weighting):
        self.weighting = weighting


def test_equal_scores_give_the_plain_token_mean_and_the_gradient_is_the_hand_one(target, tiny_data):
    """With w = 0 every weight is 1 and the loss is the model's own (mean over supervised tokens). Its gradient in
    w: with p = softmax(s) = 1/B, dL/ds_b = (T_b − mean_c T_c) / T (T_b: example b's summed token loss, T: the
    batch's supervised tokens), so dL/dw = Σ_b dL/ds_b · f_b."""
    rows = [0, 3, 5, 8]
    model, batch = _batch(target, tiny_data, rows)
    features = np.random.default_rng(0).normal(size=(len(tiny_data.pool), 6))
    weighting = ScoreNetWeighting(features, seed=0)
    with torch.no_grad():
        weighting.net.weight.zero_()
    assert torch.equal(weighting.weights(batch["rows"]), torch.ones(4))
    inputs = {k: v for k, v in batch.items()}
    loss = _Loss(weighting).compute_loss(model, dict(inputs))
    plain = model(**{k: v for k, v in batch.items() if k != "rows"}).loss
    assert loss.item() == pytest.approx(plain.item(), rel=1e-5)

    loss.backward()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k not in ("rows", "labels")}).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
        per_example = (token * mask).sum(1).double()
        ds = (per_example - per_example.mean()) / mask.sum()
        want = (ds[:, None] * torch.as_tensor(features[rows])).sum(0)
    np.testing.assert_allclose(weighting.net.weight.grad[0].double().numpy(), want.numpy(), rtol=1e-4, atol=1e-7)


def test_joint_training_saves_the_score_net_and_resumes_it_exactly(tmp_path, target, tiny_data, monkeypatch):
    from tests.models.test_training import _Interrupt, _StopAfterFirstCheckpoint
    from selectbench.training import train as train_module

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    base, cfg = target
    cfg = json.loads(json.dumps(cfg))
    cfg["finetune"].update({"epochs": 1, "batch_size": 16, "checkpoints": 3, "lr": 5e-3})
    features = np.random.default_rng(1).normal(size=(len(tiny_data.pool), 8)).astype(np.float32)

    summary = train_score_net(tiny_data, base, features, cfg, 0, tmp_path / "straight", 1)
    assert summary["examples"] == len(tiny_data.pool) and summary["score_net_dim"] == 8
    straight = np.load(tmp_path / "straight" / "score_net.npy")
    assert straight.shape == (8,)
    init = ScoreNetWeighting(features, seed=0).vector()
    assert not np.allclose(straight, init), "the score net was trained"
    assert all((c / SCORE_NET_FILE).is_file() for c in (tmp_path / "straight" / "checkpoints").glob("checkpoint-*"))
    assert not (tmp_path / "straight" / "model").exists()  # Self-Filter keeps the score net, not the model

    real = train_module.train
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "train",
                      lambda *a, **kw: real(*a, **kw, callbacks=[_StopAfterFirstCheckpoint()]))
        with pytest.raises(_Interrupt):
            train_score_net(tiny_data, base, features, cfg, 0, tmp_path / "resumed", 1)
    train_score_net(tiny_data, base, features, cfg, 0, tmp_path / "resumed", 1)
    np.testing.assert_array_equal(np.load(tmp_path / "resumed" / "score_net.npy"), straight)


def test_features_with_missing_rows_are_refused():
    from selectbench.training.self_filter import check_features

    x = np.ones((10, 1, 4), np.float32)
    x[7] = np.nan
    with pytest.raises(ValueError, match="emb.npz: 1 rows without a CLIP embedding .first row 7"):
        check_features(x, 10, "emb.npz")
    with pytest.raises(ValueError, match="emb.npz: expected embedding"):
        check_features(x, 3, "emb.npz")
