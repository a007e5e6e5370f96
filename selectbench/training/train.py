"""Stage-1 (alignment) and stage-2 (instruction tuning) training with transformers' Trainer.

The same function trains the tiny embedded models and LLaVA-1.5-7B; only the configuration differs:
full fine-tune or LoRA (peft), which modules train, checkpoint cadence, precision, batch geometry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from selectbench.models.losses import answer_token_targets
from selectbench.training.data import Collator, RowDataset, SupervisedDataset

log = logging.getLogger(__name__)

MODULE_PREFIXES = {
    "vision_tower": "model.vision_tower.",
    "projector": "model.multi_modal_projector.",
    "language_model": ("model.language_model.", "lm_head."),
}


def set_trainable(model: torch.nn.Module, modules: list[str]) -> None:
    """Train exactly the named parts (vision_tower, projector, language_model)."""
    prefixes = tuple(p for m in modules for p in ([MODULE_PREFIXES[m]] if isinstance(MODULE_PREFIXES[m], str)
                                                   else MODULE_PREFIXES[m]))
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(prefixes)


def lora_targets(model: torch.nn.Module, target_modules: str | list[str]) -> list[str]:
    """Leaf names of the language model's layers that LoRA wraps: the configured list, or for "all-linear" every
    nn.Linear of the language model (LLaVA's find_all_linear_names: not the vision tower, the projector nor
    lm_head, which lies outside the language model)."""
    if target_modules != "all-linear":
        if isinstance(target_modules, str) or not target_modules:
            raise ValueError(f"lora.target_modules: a list of layer names or 'all-linear', got {target_modules!r}")
        return list(target_modules)
    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if isinstance(module, torch.nn.Linear) and ".language_model." in f".{name}"})
    if not names:
        raise ValueError("lora.target_modules all-linear: the model has no linear layer under language_model")
    return names


def apply_lora(model: torch.nn.Module, lora: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """LoRA on the language model's linear layers only (a plain name list would also hit the CLIP tower);
    the projector stays fully trainable through modules_to_save. Seeded: torch's default seed differs from
    process to process, so an unseeded LoRA initialisation would differ between runs."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    names = "|".join(lora_targets(model, lora["target_modules"]))
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=rf".*language_model.*\.({names})$",
                        modules_to_save=["multi_modal_projector"], task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _optimizer(model: torch.nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW; the projector and the vision tower get their own learning rates when projector_lr /
    vision_lr are set (LLaVA-1.5's LoRA recipe trains the projector at 2e-5 beside LoRA at 2e-4)."""
    special = {"multi_modal_projector": cfg.get("projector_lr"), "vision_tower": cfg.get("vision_lr")}
    groups: dict[float, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = next((v for k, v in special.items() if v and k in name), cfg["lr"])
        groups.setdefault(lr, []).append(param)
    return torch.optim.AdamW([{"params": p, "lr": lr} for lr, p in groups.items()], lr=cfg["lr"],
                             weight_decay=cfg.get("weight_decay", 0.0))


def code_digest() -> str:
    """The source of the code a training run executes (selectbench/training and selectbench/models): checkpoints
    written by other code (a changed default, a fixed bug) are not resumed."""
    from selectbench.versions import source_digest

    return source_digest("training", "models")


def _fingerprint(records: list[dict], cfg: dict[str, Any], seed: int, model) -> str:
    """What a run's checkpoints depend on: the training records, the training settings, the seed, the starting
    weights (their config and a checksum of a few tensors) and the training code."""
    digest = hashlib.sha256(json.dumps([records, cfg, seed, code_digest()], sort_keys=True, default=str).encode())
    tensors = list(model.state_dict().values())
    with torch.no_grad():
        for tensor in tensors[:: max(1, len(tensors) // 16)]:
            digest.update(f"{float(tensor.float().sum()):.6e}".encode())
    return digest.hexdigest()


def _save_total_limit(cfg: dict[str, Any]) -> int | None:
    """keep_checkpoints: "all" or the last N. Default: all where a count of checkpoints is asked for (the proxy, whose
    checkpoints are XMAS's trajectory points), else the last one (enough to resume)."""
    keep = cfg.get("keep_checkpoints", "all" if cfg.get("checkpoints") else 1)
    return None if keep == "all" else int(keep)


# what a checkpoint holds only to resume training from it (the weights and trainer_state.json stay)
RESUME_ONLY_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


class ResumeStateInLastCheckpoint(TrainerCallback):
    """resume_state: last. Every checkpoint but the newest keeps only its weights: a trajectory of ~100 proxy
    checkpoints needs their weights (XMAS reads each one), while only the newest is ever resumed from, so the
    optimizer state (twice the weights for AdamW) is dropped from the others as soon as a newer one exists."""

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        dirs = sorted(Path(args.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for older in dirs[:-1]:
            for pattern in RESUME_ONLY_FILES:
                for path in older.glob(pattern):
                    path.unlink()


LOSS_SUM_FILE = "loss_sum.json"


class LossSumInCheckpoints(TrainerCallback):
    """Writes the sum of the training losses so far into every checkpoint, so that a resumed run reports the mean
    over all its steps as an uninterrupted run does (the Trainer's training_loss covers only the steps since the
    resume). Reads the Trainer's running sums, hence the trainer reference set after construction."""

    def __init__(self, prior: float = 0.0):
        self.prior = prior
        self.trainer: Trainer | None = None

    def session_sum(self) -> float:
        return float(self.trainer._total_loss_scalar) + float(self.trainer._tr_loss.item())

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / LOSS_SUM_FILE
            path.write_text(json.dumps({"step": state.global_step, "loss_sum": self.prior + self.session_sum()}))


def _prior_loss_sum(checkpoint: str | None) -> float | None:
    """The loss sum a resumed checkpoint carries (0 for a fresh run; None if it has none)."""
    if checkpoint is None:
        return 0.0
    path = Path(checkpoint) / LOSS_SUM_FILE
    return json.loads(path.read_text())["loss_sum"] if path.exists() else None


def is_main_process() -> bool:
    """True except in the non-zero ranks of a multi-process (torchrun) job: only rank 0 publishes outputs."""
    return int(os.environ.get("RANK", "0")) == 0


def _load_weights(model, checkpoint: str) -> None:
    """Weights of a full fine-tune checkpoint. The Trainer's own resume loads the file's state dict by key and,
    with LLaVA's saved key layout (language_model.model.* on disk, model.language_model.* in memory), matches
    nothing and silently resumes from the starting weights; from_pretrained maps the keys. Read in float32, which
    holds both the float32 trainable weights and the bfloat16 frozen ones of a checkpoint exactly."""
    loaded = type(model).from_pretrained(checkpoint, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)


def _resumable_checkpoint(checkpoints: Path, fingerprint: str) -> str | None:
    """The last complete checkpoint if it belongs to this very run; checkpoints left by a run on other data or
    settings (e.g. a rerun after the subset changed) are removed instead of resumed.

    The Trainer writes a checkpoint straight into its final folder (weights, optimizer, scheduler, RNG, trainer
    state, one file after another), so a run killed while saving leaves a folder that looks like the newest
    checkpoint but cannot be resumed (a truncated config.json, or weights without their optimizer state). A
    checkpoint is complete once LossSumInCheckpoints has written its file, which on_save does after all of them;
    folders without it are removed, and the run resumes from the last complete one."""
    stamp = checkpoints / "fingerprint.txt"
    if checkpoints.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        if stamp.exists() or any(checkpoints.glob("checkpoint-*")):  # else: an empty folder the Trainer made
            log.warning("removing %s: its checkpoints come from another run (different data, settings, start or "
                        "training code)", checkpoints)
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    for partial in checkpoints.glob("checkpoint-*"):
        if partial.is_dir() and not (partial / LOSS_SUM_FILE).is_file():
            log.warning("removing %s: a killed run left it half-saved", partial)
            shutil.rmtree(partial)
    stamp.write_text(fingerprint)
    return get_last_checkpoint(str(checkpoints))


def grad_accum_steps(cfg: dict[str, Any]) -> int:
    """Gradient accumulation steps: grad_accum, or from global_batch = batch_size (per device) × WORLD_SIZE (set
    by torchrun / accelerate) × accumulation, so the global batch stays whatever the number of GPUs."""
    if "global_batch" not in cfg:
        return cfg.get("grad_accum", 1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = cfg["batch_size"] * world
    if cfg["global_batch"] % per_step:
        raise ValueError(f"global_batch {cfg['global_batch']} is not a multiple of batch_size {cfg['batch_size']} "
                         f"× {world} processes")
    accum = cfg["global_batch"] // per_step
    if cfg.get("grad_accum", accum) != accum:
        raise ValueError(f"grad_accum {cfg['grad_accum']} contradicts global_batch {cfg['global_batch']} "
                         f"(batch_size {cfg['batch_size']} × {world} processes × {accum})")
    return accum


def _trainable_in_float32(model: torch.nn.Module, autocast: bool) -> None:
    """Trainable parameters held in float32 (frozen ones stay as loaded, e.g. bfloat16): an AdamW update of a
    bfloat16 weight at lr 2e-5 is mostly rounded away; bf16 autocast still runs the matmuls in bfloat16. Without
    autocast, mixed dtypes cannot meet in a matmul: then the whole model trains in float32."""
    for param in model.parameters():
        if (param.requires_grad or not autocast) and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()


class _GroupedTrainer(Trainer):
    """Batches of similar length (LLaVA's group_by_modality_length: image and text-only examples apart), so
    little compute goes to padding; lengths come from the tokenised records, no image is read for them."""

    def _get_train_sampler(self, train_dataset=None):
        from transformers.trainer_pt_utils import LengthGroupedSampler

        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = dataset.lengths()
        # text-only examples have negative lengths: sort them into their own groups
        keys = [length if length > 0 else 100_000 - length for length in lengths]
        generator = torch.Generator().manual_seed(self.args.data_seed or self.args.seed)
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    lengths=keys, generator=generator)


class _WeightedLoss:
    """Trainer mixin: each example's answer-token losses weighted by weighting.weights(rows) (an example weighting
    network trained with the model, e.g. Self-Filter's score net); the batch's loss is the weighted token sum over
    its supervised tokens, a per-batch mean the Trainer divides by the accumulation steps."""

    weighting: Any = None
    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rows = inputs.pop("rows")
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits, targets, mask = answer_token_targets(outputs.logits, labels)
        token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        weights = self.weighting.weights(rows.to(token.device))
        loss = (token * mask * weights[:, None]).sum() / mask.sum().clamp(min=1)
        return (loss, outputs) if return_outputs else loss


def train(model, tokenizer, template, images, records: list[dict], cfg: dict[str, Any], out_dir: Path,
          seed: int, threads: int = 1, on_finish=None, callbacks: list | None = None, weighting=None):
    """Train on records; checkpoints (and resume points) go under out_dir/checkpoints. Returns the trained
    model (LoRA merged) and a summary dict. on_finish(trainer), if given, runs after training and before
    the merge (e.g. to keep the adapter and the optimizer state); callbacks are transformers TrainerCallbacks.
    weighting, if given, weights each example's loss by a network trained jointly with the model
    (selectbench.training.self_filter.ScoreNetWeighting: its parameters join the optimizer at the fine-tune's
    learning rate, its state is saved in every checkpoint and restored on resume)."""
    torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    dataset = (RowDataset if weighting is not None else SupervisedDataset)(records, template, images)
    if dataset.fully_masked:
        log.warning("%d of %d examples have no supervised token left after truncation to %d tokens",
                    dataset.fully_masked, len(dataset), template.max_length)
    set_trainable(model, cfg["trainable"])
    if cfg.get("gradient_checkpointing"):
        # non-reentrant, with input grads: frozen embeddings (LoRA, stage 1) would otherwise cut the graph
        model.activation_checkpointing_enable()
    if cfg.get("finetune", "full") == "lora":
        model = apply_lora(model, cfg["lora"], seed)
    _trainable_in_float32(model, autocast=bool(cfg.get("bf16")))
    grad_accum = grad_accum_steps(cfg)
    global_batch = cfg["batch_size"] * grad_accum * int(os.environ.get("WORLD_SIZE", "1"))
    steps = max(1, math.ceil(len(dataset) / global_batch) * cfg["epochs"])
    n_checkpoints = cfg.get("checkpoints", 0)
    save_steps = max(1, math.ceil(steps / n_checkpoints)) if n_checkpoints else max(1, cfg.get("save_steps", steps))
    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=grad_accum,
        num_train_epochs=cfg["epochs"],
        learning_rate=cfg["lr"],
        lr_scheduler_type=cfg.get("scheduler", "cosine"),
        warmup_steps=int(round(cfg.get("warmup_ratio", 0.03) * steps)),
        weight_decay=cfg.get("weight_decay", 0.0),
        max_grad_norm=cfg.get("max_grad_norm", 1.0),
        logging_steps=cfg.get("logging_steps", max(1, steps // 20)),
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=_save_total_limit(cfg),
        save_only_model=cfg.get("save_only_model", False),  # True drops optimizer state: no exact resume
        seed=seed,
        data_seed=seed,
        bf16=cfg.get("bf16", False),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=cfg.get("dataloader_workers", 0),
        # under torchrun (DDP), a text-only batch leaves the projector without gradients: let DDP look for unused
        # parameters (fine with non-reentrant checkpointing) instead of failing on the next step
        ddp_find_unused_parameters=cfg.get("ddp_find_unused_parameters", True),
        remove_unused_columns=False,
        report_to=[],
        disable_tqdm=False,
    )
    trainer_cls = _GroupedTrainer if cfg.get("group_by_length") else Trainer
    optimizer = _optimizer(model, cfg)
    if weighting is not None:
        trainer_cls = type("WeightedTrainer", (_WeightedLoss, trainer_cls), {"weighting": weighting})
        # on the training device before the optimizer (or a resumed optimizer state) sees its parameters
        weighting.net.to(args.device)
        optimizer.add_param_group({"params": list(weighting.parameters()), "lr": cfg["lr"], "weight_decay": 0.0})
    # under torchrun every rank runs this; the main process clears foreign checkpoints before the others look
    with args.main_process_first(desc="checkpoint check"):
        last = _resumable_checkpoint(out_dir / "checkpoints", _fingerprint(records, cfg, seed, model))
    prior = _prior_loss_sum(last)
    losses = LossSumInCheckpoints(prior or 0.0)
    # the weighting saves its state before LossSumInCheckpoints marks a checkpoint complete
    own = ([weighting.callback()] if weighting is not None else []) + [losses] \
        + ([ResumeStateInLastCheckpoint()] if cfg.get("resume_state", "all") == "last" else [])
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset,
                          data_collator=Collator(tokenizer.pad_token_id, images),
                          optimizers=(optimizer, None), callbacks=own + (callbacks or []))
    losses.trainer = trainer
    if last:
        log.info("resuming from %s", last)
    if last and cfg.get("finetune", "full") != "lora":
        _load_weights(model, last)
    if last and weighting is not None:
        weighting.load(Path(last))
    result = trainer.train(resume_from_checkpoint=last)
    # the mean over every step, the resumed ones included; rounded, since a resume groups the float sums differently
    train_loss = (round((prior + float(trainer._total_loss_scalar)) / trainer.state.global_step, 10)
                  if prior is not None and trainer.state.global_step else result.training_loss)
    if on_finish is not None:
        on_finish(trainer)
    if cfg.get("finetune", "full") == "lora":
        model = model.merge_and_unload()
    summary = {"examples": len(dataset), "steps": steps, "save_steps": save_steps,
               "fully_masked": dataset.fully_masked, "truncated": dataset.truncated, "truncation": dataset.truncation,
               "train_loss": train_loss, "train_runtime_s": result.metrics.get("train_runtime"),
               "loss_log": [h for h in trainer.state.log_history if "loss" in h],
               "epochs_run": trainer.state.epoch}
    return model, summary
