"""Training stages as the DAG runs them: a role's base model (by the builder its config names), and the stage-2
fine-tune of a base model on a subset."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from selectbench import registry
from selectbench.data.images import ImageLoader
from selectbench.data.datadir import DataDir
from selectbench.io import atomic_dir, atomic_write_text
from selectbench.models.build import load_model, save_model
from selectbench.models.conversation import VicunaV1, make_template

log = logging.getLogger(__name__)

def train_base(data: DataDir, tokenizer_dir: Path | None, model_cfg: dict[str, Any], seed: int, out_dir: Path,
               threads: int) -> dict:
    """The base model of a role, built by the builder its config names and published to out_dir/model."""
    torch.set_num_threads(threads)
    build = registry.load("builder", model_cfg.get("builder"), "builder")
    return build(data, tokenizer_dir, model_cfg, seed, Path(out_dir), threads)


def pretrained_base(data: DataDir, tokenizer_dir: Path | None, model_cfg: dict[str, Any], seed: int,
                    out_dir: Path, threads: int) -> dict:
    """LLaVA from pretrained parts (a whole LLaVA checkpoint, or a language model, a vision tower and a projector
    assembled); stage 1 on the captions only where the config has one. tokenizer_dir is not used."""
    from selectbench.models.assemble import assemble_llava, describe
    from selectbench.training.train import train

    start = time.time()
    parts = model_cfg["pretrained"]
    model, tokenizer, processor = assemble_llava(parts, seed)
    template = make_template(tokenizer, model, model_cfg["template"])
    summary: dict[str, Any] = {"assembled": describe(parts), "vocab_size": len(tokenizer),
                               "image_seq_length": model.config.image_seq_length}
    if model_cfg.get("stage1"):
        images = ImageLoader(data.image_root, processor)
        model, trained = train(model, tokenizer, template, images, data.captions(), model_cfg["stage1"], out_dir,
                               seed, threads)
        summary.update(trained)
    else:
        if not parts.get("projector") and not parts.get("llava"):
            log.warning("no projector file and no stage 1: the projector stays at its random start until stage 2")
        summary.update({"examples": 0, "train_loss": None, "stage1": "not run: no stage1 in the config"})
    return publish(model, tokenizer, processor, out_dir, {**summary, "wall_s": time.time() - start}, template,
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
    return publish(model, tokenizer, processor, Path(out_dir), {**summary, "wall_s": time.time() - start},
                   template, model_cfg)


def weights_dtype(model_cfg: dict[str, Any]) -> torch.dtype:
    """The dtype a role's model is loaded in for training: the `pretrained` block's dtype (training keeps the
    trainable parameters in float32 whatever it is), else float32."""
    from selectbench.models.assemble import torch_dtype

    return torch_dtype((model_cfg.get("pretrained") or {}).get("dtype"))


def publish(model, tokenizer, processor, out_dir: Path, summary: dict, template: VicunaV1,
            model_cfg: dict[str, Any]) -> dict:
    """Save the final model (with its processor and the template's chat template) in the role's dtype (training
    held the trainable weights in float32), so a half-written model never looks complete. Under torchrun only
    rank 0 writes."""
    from selectbench.training.train import is_main_process

    if not is_main_process():
        return summary
    with atomic_dir(out_dir / "model") as tmp:
        save_model(model.to(weights_dtype(model_cfg)), tokenizer, processor, tmp, template.chat_template())
    from selectbench.versions import provenance

    summary = {**summary, "provenance": provenance()}
    atomic_write_text(out_dir / "train_summary.json", json.dumps(summary, indent=1))
    return summary


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Trainer checkpoints of a run, in step order."""
    dirs = list((Path(run_dir) / "checkpoints").glob("checkpoint-*"))
    return sorted(dirs, key=lambda p: int(p.name.split("-")[1]))
