"""The digits recipe: `until_loss` (a phase stops once its logged training loss is below a target; `epochs` is then
a cap) and the fallback phase of stage 0."""

import json
import logging
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer, TrainerControl

from selectbench.data.images import ImageLoader
from selectbench.models.build import build_llava, image_processor_for
from selectbench.embedded.tokenizer import build_tokenizer
from selectbench.models.conversation import make_template
from selectbench.embedded.recipe import StopBelowLoss, train_until
from selectbench.training.stages import train_base


def _feed(callback: StopBelowLoss, losses: list[float], history: list[dict] | None = None) -> list[bool]:
    """Log each loss as the Trainer does: appended to the state's log history, then on_log."""
    history = [] if history is None else history
    stops = []
    for loss in losses:
        history.append({"loss": loss})
        history.append({"eval_loss": 9.0})  # other log entries are not training losses
        control = TrainerControl()
        state = SimpleNamespace(epoch=len(history) / 20, log_history=history)
        callback.on_log(None, state, control, logs={"loss": loss})
        stops.append(control.should_training_stop)
    return stops


def test_stops_once_the_window_mean_is_below_the_threshold():
    callback = StopBelowLoss(0.05, window=3)
    # one low log is not enough: the mean of the last three must be below 0.05
    assert _feed(callback, [0.35, 0.34, 0.01, 0.09, 0.06, 0.04, 0.03]) == [False] * 6 + [True]
    assert callback.stopped_at_epoch == pytest.approx(0.7)


def test_a_window_not_yet_full_never_stops():
    callback, history = StopBelowLoss(1.0, window=4), []
    assert _feed(callback, [0.1, 0.1, 0.1], history) == [False] * 3
    assert callback.stopped_at_epoch is None
    assert _feed(callback, [0.1], history) == [True]


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory, tiny_data, tiny_config):
    out = tmp_path_factory.mktemp("until_loss")
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], out / "tok")
    tokenizer = AutoTokenizer.from_pretrained(out / "tok")
    cfg = tiny_config["models"]["target"]
    model = build_llava(cfg["recipe"]["arch"], tokenizer, 0)
    images = ImageLoader(tiny_data.image_root, image_processor_for(cfg["recipe"]["arch"]["vision"]))
    return model, tokenizer, make_template(tokenizer, model, cfg["template"]), images, tiny_data.pool[:32]


def _phase(until_loss: float) -> dict:
    return {"trainable": ["language_model"], "epochs": 3, "batch_size": 8, "lr": 1e-3, "until_loss": until_loss,
            "logging_steps": 1}


def test_training_ends_early_when_the_target_is_reached(tmp_path, tiny_parts):
    model, tokenizer, template, images, records = tiny_parts
    _, summary = train_until(model, tokenizer, template, images, records, _phase(100.0), tmp_path, 0, 1)
    # 4 steps per epoch: the first window of 4 logged losses is already below 100
    assert summary["until_loss"]["reached"] is True
    assert summary["until_loss"]["epochs"] == pytest.approx(1.0)
    assert len(summary["loss_log"]) == 4


def test_an_unreached_target_runs_the_cap_and_says_so(tmp_path, tiny_parts, caplog):
    model, tokenizer, template, images, records = tiny_parts
    with caplog.at_level(logging.WARNING, logger="selectbench.training.train"):
        _, summary = train_until(model, tokenizer, template, images, records, _phase(1e-9), tmp_path, 0, 1)
    assert summary["until_loss"]["reached"] is False
    assert summary["until_loss"]["epochs"] == pytest.approx(3.0)
    assert len(summary["loss_log"]) == 12
    assert "never fell below until_loss" in caplog.text


def test_a_fallback_stage0_phase_runs_only_while_the_previous_loss_is_high(monkeypatch, tmp_path, tiny_data,
                                                                           tiny_config):
    import selectbench.embedded.recipe as recipe

    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], tmp_path / "tokenizer")
    cfg = json.loads(json.dumps(tiny_config["models"]["target"]))
    for key in ("vision_pretrain", "align_projector"):
        cfg["recipe"].pop(key)
    phase = {"part": 0, "epochs": 1, "batch_size": 16, "lr": 5e-4}
    fallback = {**phase, "skip_if_previous_loss_below": 0.1}
    cfg["recipe"]["stage0"] = [phase, fallback, fallback]
    final_losses = iter([0.35, 0.02, 0.5])  # of stage-0 phase 0, phase 1, then stage 1
    calls = []

    def fake_train(model, tokenizer, template, images, records, train_cfg, *args, **kwargs):
        calls.append(train_cfg)
        loss = next(final_losses)
        return model, {"examples": len(records), "train_loss": loss, "loss_log": [{"loss": 9.0}] + [{"loss": loss}] * 4}

    monkeypatch.setattr(recipe, "train", fake_train)
    summary = train_base(tiny_data, tmp_path / "tokenizer", cfg, 0, tmp_path / "base", 1)
    # phase 0 ended at 0.35: the fallback ran; it ended at 0.02: the second fallback was skipped; then stage 1
    assert len(calls) == 3 and "scene_parts" not in calls[2]
    assert not any("skip_if_previous_loss_below" in c for c in calls)
    assert summary["stage0_0_final_loss"] == pytest.approx(0.35)
    assert summary["stage0_1_final_loss"] == pytest.approx(0.02)
    assert summary["stage0_2_skipped"] == "previous phase ended at loss 0.0200 < 0.1"
    assert "stage0_2_loss" not in summary
