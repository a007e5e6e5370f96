"""Training stages as the DAG runs them: tokenizer, stage-1 base model, stage-2 fine-tune on a subset."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from selectbench.data.images import ImageLoader
from selectbench.data.prepare import DataDir
from selectbench.models.build import build_llava, image_processor_for, image_seq_length, load_model, save_model
from selectbench.models.conversation import VicunaV1
from selectbench.models.tokenizer import conversation_texts, train_tokenizer

log = logging.getLogger(__name__)


def make_template(tokenizer, model, template_cfg: dict[str, Any]) -> VicunaV1:
    """model: a LLaVA model or just its config (all the template needs is image_seq_length)."""
    config = getattr(model, "config", model)
    return VicunaV1(tokenizer, config.image_seq_length, system=template_cfg.get("system", ""),
                    max_length=template_cfg.get("max_length", 2048))


def build_tokenizer(data: DataDir, vocab_size: int, out_dir: Path) -> None:
    train_tokenizer(conversation_texts(data.pool + data.captions()), vocab_size, Path(out_dir))


def train_base(data: DataDir, tokenizer_dir: Path | None, model_cfg: dict[str, Any], seed: int, out_dir: Path,
               threads: int) -> dict:
    """The base model of a role: built from `arch` and trained on the captions (stage 1, LLaVA's alignment
    stage), or assembled from `pretrained` parts (stage 1 only if configured; tokenizer_dir is not used)."""
    from transformers import AutoTokenizer

    from selectbench.training.train import final_logged_loss, train

    torch.set_num_threads(threads)
    if "pretrained" in model_cfg:
        return _pretrained_base(data, model_cfg, seed, Path(out_dir), threads)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_llava(model_cfg["arch"], tokenizer, seed)
    processor = image_processor_for(model_cfg["arch"]["vision"])
    assert model.config.image_seq_length == image_seq_length(model_cfg["arch"]["vision"])
    template = make_template(tokenizer, model, model_cfg["template"])
    images = ImageLoader(data.image_root, processor)
    start = time.time()
    extra: dict[str, Any] = {}
    labelled = None
    if model_cfg.get("vision_pretrain") or model_cfg.get("align_projector"):
        labelled = data.vision_pretrain()
        if labelled is None:
            raise ValueError(f"{data.path}: vision_pretrain / align_projector is configured but the dataset has no "
                             "labelled images")
    if model_cfg.get("vision_pretrain"):
        from selectbench.models.vision_pretrain import pretrain_vision_tower

        extra.update(pretrain_vision_tower(model.model.vision_tower, images, labelled, model_cfg["vision_pretrain"],
                                           model.config.vision_feature_layer, seed))
    if model_cfg.get("align_projector"):
        # image tokens start as the characters of the text that asks about them
        from selectbench.models.projector_align import align_projector

        extra.update(align_projector(model, tokenizer, images, labelled, model_cfg["align_projector"], seed))
    final_loss = None  # of the previous stage-0 phase: the mean of its last logged training losses
    for k, phase in enumerate(model_cfg.get("stage0", [])):
        # stage 0: the scene corpus, in parts; by default the language model alone (the projector as aligned)
        phase = dict(phase)
        skip_below = phase.pop("skip_if_previous_loss_below", None)
        if skip_below is not None and final_loss is not None and final_loss < skip_below:
            # a fallback phase, not needed: the previous phase already learned what it is there for
            extra[f"stage0_{k}_skipped"] = f"previous phase ended at loss {final_loss:.4f} < {skip_below}"
            log.info("stage 0 phase %d skipped: %s", k, extra[f"stage0_{k}_skipped"])
            continue
        records = data.scene_corpus(phase.pop("part"))
        model, trained = train(model, tokenizer, template, images, records,
                               {"finetune": "full", "trainable": ["language_model"], **phase},
                               Path(out_dir) / f"stage0_{k}", seed, threads)
        extra[f"stage0_{k}_loss"] = trained["train_loss"]
        final_loss = final_logged_loss(trained["loss_log"])
        extra[f"stage0_{k}_final_loss"] = final_loss
        if "until_loss" in trained:  # a phase with a loss target: how many epochs it took, or that it never got there
            extra[f"stage0_{k}_until_loss"] = trained["until_loss"]
    stage1 = dict(model_cfg["stage1"])
    records = data.captions() + [r for part in stage1.pop("scene_parts", []) for r in data.scene_corpus(part)]
    model, summary = train(model, tokenizer, template, images, records, stage1, Path(out_dir), seed, threads)
    return _publish(model, tokenizer, processor, Path(out_dir), {**summary, **extra, "wall_s": time.time() - start},
                    template, model_cfg)


def _pretrained_base(data: DataDir, model_cfg: dict[str, Any], seed: int, out_dir: Path, threads: int) -> dict:
    """LLaVA assembled from pretrained parts; stage 1 (on the captions) only where the config has one."""
    from selectbench.models.assemble import assemble_llava
    from selectbench.training.train import train

    for key in ("vision_pretrain", "stage0", "align_projector"):
        if model_cfg.get(key):
            raise ValueError(f"{key} is for models built from `arch`; a `pretrained` model brings its own parts")
    start = time.time()
    parts = model_cfg["pretrained"]
    model, tokenizer, processor = assemble_llava(parts, seed)
    template = make_template(tokenizer, model, model_cfg["template"])
    summary: dict[str, Any] = {
        "assembled": {key: parts.get(key) for key in ("language_model", "language_model_gguf", "vision_tower",
                                                      "projector", "vision_feature_layer", "dtype")},
        "vocab_size": len(tokenizer), "image_seq_length": model.config.image_seq_length}
    if model_cfg.get("stage1"):
        images = ImageLoader(data.image_root, processor)
        model, trained = train(model, tokenizer, template, images, data.captions(), model_cfg["stage1"], out_dir,
                               seed, threads)
        summary.update(trained)
    else:
        if not parts.get("projector"):
            log.warning("no projector file and no stage 1: the projector stays at its random start until stage 2")
        summary.update({"examples": 0, "train_loss": None,
                        "stage1": "not run: no stage1 in the config (projector "
                                  f"{'from ' + str(parts['projector']) if parts.get('projector') else 'random'})"})
    return _publish(model, tokenizer, processor, out_dir, {**summary, "wall_s": time.time() - start}, template,
                    model_cfg)


def finetune(data: DataDir, base_dir: Path, rows: list[int] | None, model_cfg: dict[str, Any], seed: int,
             out_dir: Path, threads: int) -> dict:
    """Stage 2 (instruction tuning) of a base model on the pool rows given (None = the whole pool)."""
    from selectbench.training.train import train

    model, tokenizer, processor = load_model(Path(base_dir) / "model", threads, weights_dtype(model_cfg))
    template = make_template(tokenizer, model, model_cfg["template"])
    images = ImageLoader(data.image_root, processor)
    records = data.pool if rows is None else [data.pool[r] for r in rows]
    start = time.time()
    model, summary = train(model, tokenizer, template, images, records, model_cfg["finetune"], Path(out_dir),
                           seed, threads)
    return _publish(model, tokenizer, processor, Path(out_dir), {**summary, "wall_s": time.time() - start},
                    template, model_cfg)


def weights_dtype(model_cfg: dict[str, Any]) -> torch.dtype:
    """The dtype a role's model is loaded in for training: the `pretrained` block's dtype (training keeps the
    trainable parameters in float32 whatever it is), float32 for models built from `arch`."""
    from selectbench.models.assemble import torch_dtype

    return torch_dtype(model_cfg["pretrained"].get("dtype")) if "pretrained" in model_cfg else torch.float32


def _publish(model, tokenizer, processor, out_dir: Path, summary: dict, template: VicunaV1,
             model_cfg: dict[str, Any]) -> dict:
    """Save the final model (with its processor and the template's chat template) through a temporary folder so
    a half-written model never looks complete, in the role's dtype (training held the trainable weights in
    float32). Under torchrun only rank 0 writes."""
    from selectbench.training.train import is_main_process

    if not is_main_process():
        return summary
    final, tmp = out_dir / "model", out_dir / "model.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model.to(weights_dtype(model_cfg)), tokenizer, processor, tmp, template.chat_template())
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Trainer checkpoints of a run, in step order."""
    dirs = list((Path(run_dir) / "checkpoints").glob("checkpoint-*"))
    return sorted(dirs, key=lambda p: int(p.name.split("-")[1]))
