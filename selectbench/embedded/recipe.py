"""The recipe that builds the embedded world's base models from nothing (the role Vicuna's pretraining, CLIP and
LLaVA's stage 1 play at paper scale). Its outputs ship in pretrained/; the default run starts from them.

A role's `recipe:` block (config/embedded_parts.yaml) runs, in order:
  1. `vision_pretrain`: the vision tower learns to classify every grid cell (empty or 0–9), then stays frozen;
  2. `align_projector`: the projector is fitted so a cell's image token is its character's input embedding plus
     a fixed random vector for the cell (membership questions are learned in no other way found);
  3. `stage0`: phases on the dataset's scene corpus; a phase may stop once its training loss is below
     `until_loss` (`epochs` is then a cap) and may be skipped where the previous phase's loss is already below
     `skip_if_previous_loss_below` (a fallback for starts whose loss stayed on the presence plateau);
  4. `stage1`: the captions (and `scene_parts` of the corpus), LLaVA's alignment stage with the LM trained too.
docs/embedded.md says why each step is there and what was measured.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, TrainerCallback

from selectbench.data.images import ImageLoader
from selectbench.data.datadir import DataDir
from selectbench.models.build import build_llava, image_processor_for, image_seq_length
from selectbench.models.conversation import make_template
from selectbench.training.stages import publish
from selectbench.training.train import train

log = logging.getLogger(__name__)

LOSS_WINDOW = 4  # logged training losses averaged by `until_loss` and by final_logged_loss


def final_logged_loss(loss_log: list[dict], window: int = LOSS_WINDOW) -> float | None:
    """The mean of a run's last `window` logged training losses (None if nothing was logged)."""
    losses = [h["loss"] for h in loss_log][-window:]
    return sum(losses) / len(losses) if losses else None


class StopBelowLoss(TrainerCallback):
    """Ends training once final_logged_loss (the mean of the last `window` logged training losses) is below
    `threshold`: for a phase whose loss sits on a plateau for a number of steps that varies with the seed before it
    drops (stage 0's presence questions), `epochs` is then a cap, not a schedule. Reads the trainer's own log
    history (restored on resume), so it keeps no losses of its own."""

    def __init__(self, threshold: float, window: int = LOSS_WINDOW):
        self.threshold, self.window = threshold, window
        self.stopped_at_epoch: float | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logged = [h for h in state.log_history if "loss" in h]
        if logs and "loss" in logs and len(logged) >= self.window and \
                final_logged_loss(logged, self.window) < self.threshold:
            self.stopped_at_epoch = state.epoch
            control.should_training_stop = True
        return control


def train_until(model, tokenizer, template, images, records: list[dict], cfg: dict[str, Any], out_dir: Path,
                seed: int, threads: int):
    """train(), stopped early once the loss is below cfg["until_loss"] where it is set; the summary then says
    whether that target was reached and after how many epochs."""
    cfg = dict(cfg)
    threshold = cfg.pop("until_loss", None)
    stop = StopBelowLoss(threshold) if threshold else None
    model, summary = train(model, tokenizer, template, images, records, cfg, out_dir, seed, threads,
                           callbacks=[stop] if stop else None)
    if stop is not None:
        last = [h["loss"] for h in summary["loss_log"][-stop.window:]]
        reached = stop.stopped_at_epoch is not None
        summary["until_loss"] = {"threshold": threshold, "reached": reached,
                                 "epochs": stop.stopped_at_epoch if reached else summary["epochs_run"],
                                 "last_losses": last}
        if not reached:
            log.warning("training loss never fell below until_loss %s in %s epochs (last logged: %s)", threshold,
                        cfg["epochs"], ", ".join(f"{x:.3f}" for x in last))
    return model, summary


def cell_labels(data: DataDir) -> list[dict]:
    name = data.manifest.get("vision_pretrain")
    if not name:
        raise ValueError(f"{data.path / 'manifest.json'}: vision_pretrain / align_projector is configured but the "
                         "dataset has no labelled images (an embedded dataset writes vision_pretrain.json)")
    return json.loads((data.path / name).read_text())


def scene_corpus(data: DataDir, part: int) -> list[dict]:
    """Part `part` of the dataset's scene corpus (datasets.<d>.embedded.scene_corpus)."""
    parts = data.manifest.get("scene_corpus", [])
    if not 0 <= part < len(parts):
        raise KeyError(f"{data.path / 'manifest.json'}: no scene corpus part {part} (has {len(parts)}; set "
                       "datasets.<d>.embedded.scene_corpus)")
    return json.loads((data.path / parts[part]).read_text())


def train_base(data: DataDir, tokenizer_dir: Path | None, model_cfg: dict[str, Any], seed: int, out_dir: Path,
               threads: int) -> dict:
    """The base model of a role built by the recipe (module docstring) and published to out_dir/model."""
    if tokenizer_dir is None:
        raise ValueError("the digits recipe builds its models on the dataset's tokenizer (the tokenizer rule)")
    recipe = model_cfg["recipe"]
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_llava(recipe["arch"], tokenizer, seed)
    processor = image_processor_for(recipe["arch"]["vision"])
    assert model.config.image_seq_length == image_seq_length(recipe["arch"]["vision"])
    template = make_template(tokenizer, model, model_cfg["template"])
    images = ImageLoader(data.image_root, processor)
    start = time.time()
    extra: dict[str, Any] = {}
    if recipe.get("vision_pretrain"):
        from selectbench.embedded.vision_pretrain import pretrain_vision_tower

        extra.update(pretrain_vision_tower(model.model.vision_tower, images, cell_labels(data),
                                           recipe["vision_pretrain"], model.config.vision_feature_layer, seed))
    if recipe.get("align_projector"):
        from selectbench.embedded.projector_align import align_projector

        extra.update(align_projector(model, tokenizer, images, cell_labels(data), recipe["align_projector"],
                                     seed))
    final_loss = None  # of the previous stage-0 phase: the mean of its last logged training losses
    for k, phase in enumerate(recipe.get("stage0", [])):
        # by default the language model alone trains (the projector stays as aligned)
        phase = dict(phase)
        skip_below = phase.pop("skip_if_previous_loss_below", None)
        if skip_below is not None and final_loss is not None and final_loss < skip_below:
            extra[f"stage0_{k}_skipped"] = f"previous phase ended at loss {final_loss:.4f} < {skip_below}"
            log.info("stage 0 phase %d skipped: %s", k, extra[f"stage0_{k}_skipped"])
            continue
        records = scene_corpus(data, phase.pop("part"))
        model, trained = train_until(model, tokenizer, template, images, records,
                                     {"finetune": "full", "trainable": ["language_model"], **phase},
                                     Path(out_dir) / f"stage0_{k}", seed, threads)
        extra[f"stage0_{k}_loss"] = trained["train_loss"]
        final_loss = final_logged_loss(trained["loss_log"])
        extra[f"stage0_{k}_final_loss"] = final_loss
        if "until_loss" in trained:
            extra[f"stage0_{k}_until_loss"] = trained["until_loss"]
    stage1 = dict(recipe["stage1"])
    records = data.captions() + [r for part in stage1.pop("scene_parts", []) for r in scene_corpus(data, part)]
    model, summary = train(model, tokenizer, template, images, records, stage1, Path(out_dir), seed, threads)
    return publish(model, tokenizer, processor, Path(out_dir), {**summary, **extra, "wall_s": time.time() - start},
                   template, model_cfg)
