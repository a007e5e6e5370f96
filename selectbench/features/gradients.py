"""LESS-style per-example gradient features of the proxy (Xia et al. 2024; GraNd, TIVE, ICONS).

1. Warm-up (once per dataset and spec): a short LoRA run on a seeded fraction of the pool, from the weights
   `start` names: the proxy base (`base`), or a checkpoint of the proxy fine-tune (`proxy_checkpoint`, index
   `checkpoint`, default the first), whose connector has been trained; the adapter and the Adam moments are
   kept.
2. Per-example LoRA gradients with training's label masking (each example's loss is the mean over its own
   answer tokens, as if alone in its batch), computed for a whole batch in one backward pass: hooks on every
   LoRA linear keep its inputs and output gradients, and the per-example weight gradient of a linear layer is
   Σ_t δ_t ⊗ x_t (exact; no loop of one backward per example, see benchmarks/gradient_pass.py).
3. Optional Adam preconditioning from the warm-up state (LESS: m'/(√v' + ε) with m', v' updated by the
   example's gradient), a seeded Rademacher projection to `dim` dimensions (drawn on the pass's device, block
   by block), stored with the raw gradient's norm (GraNd). Shards save every chunk of batches as it finishes, so an interrupted run resumes.

4. Task validation examples (LESS's validation gradients, for the task-aware `validation` target), once per
   spec, by shard 0: the same gradients at the warm-up checkpoint with plain SGD direction (no Adam
   preconditioning, as LESS) and the same projection.

Output of one shard: rows, projected (n, 1, dim) float32 (not normalised), grad_norm (n, 1); shard 0 adds
meta_validation_projected (m, dim), meta_validation_grad_norm (m,), meta_validation_task (m,) and
meta_validation_id (m,) for the data folder's m validation examples (none where it has no validation sets).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from selectbench.data.images import ImageLoader
from selectbench.data.datadir import DataDir
from selectbench.features import FEATURES, ShardJob
from selectbench.features.passes import device_for, dtype_meta, pass_dtype, run_shard, \
    shard_batches_for
from selectbench.models.losses import example_losses
from selectbench.models.build import load_checkpoint
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, SupervisedDataset

log = logging.getLogger(__name__)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def warmup_rows(pool_size: int, fraction: float, seed: int) -> np.ndarray:
    n = max(1, int(round(fraction * pool_size)))
    return np.sort(np.random.default_rng(seed).choice(pool_size, size=n, replace=False))


def lora_config(spec: dict[str, Any]) -> dict[str, Any]:
    return {"r": spec["lora_r"], "alpha": 2 * spec["lora_r"], "dropout": 0.0,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


WARMUP_STARTS = ("base", "proxy_checkpoint")


def warmup_start(spec: dict[str, Any], base_dir: Path | None = None, checkpoints: Path | None = None) -> Path:
    """The weights the warm-up starts from (config gradient_warmup.start): the proxy base's published model
    (`base`), or checkpoint number `checkpoint` (default 0, the first) of the proxy fine-tune's list
    (`proxy_checkpoint`). At paper scale the base's connector is random (no stage 1) while the fine-tune's first
    checkpoint has trained it: the gradients are then taken on an aligned model, for no extra GPU time."""
    start = spec.get("start", "base")
    if start not in WARMUP_STARTS:
        raise ValueError(f"gradient_warmup.start must be one of {WARMUP_STARTS}, got {start!r}")
    if start == "base":
        if base_dir is None:
            raise ValueError("gradient_warmup.start base: the proxy base is needed")
        return Path(base_dir) / "model"
    if checkpoints is None:
        raise ValueError("gradient_warmup.start proxy_checkpoint: the proxy fine-tune's checkpoint list is needed")
    listing = json.loads(Path(checkpoints).read_text())
    index = int(spec.get("checkpoint", 0))
    if not -len(listing) <= index < len(listing):
        raise ValueError(f"gradient_warmup.checkpoint {index} out of range; the proxy saved {len(listing)}")
    return Path(listing[index])


def run_warmup(data: DataDir, start_model: Path, model_cfg: dict[str, Any], spec: dict[str, Any], out_dir: Path,
               threads: int = 1) -> dict[str, Any]:
    """LoRA warm-up from start_model (a published model or a Trainer checkpoint: warmup_start) on a seeded
    `fraction` of the pool (config gradient_warmup: fraction, epochs, lr, lora_r, seed); saves adapter/ (peft
    format) and adam_state.pt ({parameter name: exp_avg, exp_avg_sq, step}) under out_dir."""
    from selectbench.training.train import train

    torch.set_num_threads(threads)
    model, tokenizer, processor = load_checkpoint(Path(start_model))
    template = make_template(tokenizer, model, model_cfg["template"])
    images = ImageLoader(data.image_root, processor)
    rows = warmup_rows(len(data.pool), spec["fraction"], spec["seed"])
    cfg = {**model_cfg["finetune"], "finetune": "lora", "lora": lora_config(spec), "epochs": spec["epochs"],
           "lr": spec["lr"], "checkpoints": 0, "group_by_length": False, "trainable": ["language_model"]}
    out_dir = Path(out_dir)

    def keep(trainer) -> None:
        peft_model = trainer.model
        peft_model.save_pretrained(out_dir / "adapter")
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        state = {}
        for name, param in peft_model.named_parameters():
            if "lora_" in name and param in optimizer.state:
                s = optimizer.state[param]
                state[name] = {"exp_avg": s["exp_avg"].cpu(), "exp_avg_sq": s["exp_avg_sq"].cpu(),
                               "step": float(s["step"])}
        torch.save(state, out_dir / "adam_state.pt")

    _, summary = train(model, tokenizer, template, images, [data.pool[r] for r in rows], cfg, out_dir / "run",
                       spec["seed"], threads, on_finish=keep)
    summary = {"rows": int(len(rows)), "spec": spec, "start_model": str(start_model),
               "train_loss": summary["train_loss"]}
    (out_dir / "warmup.json").write_text(json.dumps(summary, indent=1))
    return summary


def load_warm_model(start_model: Path, warmup_dir: Path, dtype: torch.dtype = torch.float32):
    """The warm-up's start weights (cast to dtype) with its adapter (unmerged: its LoRA weights are the parameters
    we differentiate; peft keeps them in float32 over a half-precision model, so the LoRA path, its per-example
    gradients and everything after are float32)."""
    from peft import PeftModel

    model, tokenizer, processor = load_checkpoint(Path(start_model), dtype=dtype)
    model = PeftModel.from_pretrained(model, Path(warmup_dir) / "adapter", is_trainable=True)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    # tensors only: weights_only refuses a pickle that would run code, whatever torch's default
    adam = torch.load(Path(warmup_dir) / "adam_state.pt", map_location="cpu", weights_only=True)
    return model.eval(), tokenizer, processor, adam


class PerExampleGradients:
    """Hooks on every LoRA linear: after one backward of Σ_b loss_b, per-example weight gradients
    (B, out, in) = Σ_t δ[b, t] ⊗ x[b, t]."""

    def __init__(self, model):
        self.modules = {}
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and (".lora_A." in name + "." or ".lora_B." in name + "."):
                self.modules[name + ".weight"] = module
        self.inputs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self.handles = []
        for key, module in self.modules.items():
            self.handles.append(module.register_forward_hook(self._keep(key)))

    def _keep(self, key: str):
        def hook(_module, inputs, output):
            self.inputs[key] = inputs[0].detach()
            if output.requires_grad:
                output.register_hook(lambda grad: self.grads.__setitem__(key, grad.detach()))
        return hook

    def names(self) -> list[str]:
        return list(self.modules)

    def per_example(self) -> dict[str, torch.Tensor]:
        return {k: torch.einsum("bto,bti->boi", self.grads[k].float(), self.inputs[k].float()) for k in self.modules}

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def per_example_losses_sum(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ_b (mean cross-entropy over example b's answer tokens): the per-example losses training would see for
    each example alone, so each one's gradient is its own."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   pixel_values=batch.get("pixel_values")).logits
    return example_losses(logits, batch["labels"]).sum()


class RademacherProjection:
    """x (B, D) → x P / √d with P ∈ {−1, +1}^{D×d} drawn from the seed, block by block of rows (so a huge D
    never needs all of P at once); blocks are cached while they fit in `cache_bytes`. Each block is drawn by a
    generator on the device of x, seeded per block: on a CPU the draws are those of torch's CPU generator, on a
    GPU those of its CUDA generator (another stream, so the projected features of a GPU run differ from a CPU
    run's, as two random projections do; every shard of a run uses the same device). A paper-scale P (50M rows)
    never fits the cache: drawing it on the CPU and copying it to the GPU for every batch would dominate the
    pass."""

    def __init__(self, total_dim: int, dim: int, seed: int, block: int = 1 << 14, cache_bytes: int = 1 << 28):
        self.total_dim, self.dim, self.seed, self.block = total_dim, dim, seed, block
        self.cache: dict[int, torch.Tensor] | None = {} if total_dim * dim <= cache_bytes else None

    def _block(self, i: int, device) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        rows = min(self.block, self.total_dim - i * self.block)
        g = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + i)
        p = torch.randint(0, 2, (rows, self.dim), generator=g, dtype=torch.int8, device=device) * 2 - 1
        if self.cache is not None:
            self.cache[i] = p
        return p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.dim, device=x.device)
        for i in range(math.ceil(self.total_dim / self.block)):
            chunk = x[:, i * self.block:(i + 1) * self.block]
            out += chunk @ self._block(i, x.device).to(chunk.dtype)
        return out / math.sqrt(self.dim)


def adam_direction(grads: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """LESS's Adam-preconditioned per-example update direction from the warm-up moments m, v (flattened)."""
    b1, b2 = ADAM_BETAS
    m_new = b1 * m + (1 - b1) * grads
    v_new = b2 * v + (1 - b2) * grads * grads
    return m_new / (v_new.sqrt() + ADAM_EPS)


def gradient_features(model, batches, adam: dict[str, dict], spec: dict[str, Any], device: torch.device,
                      desc: str = "") -> dict[str, np.ndarray]:
    model.to(device)
    hooks = PerExampleGradients(model)
    names = hooks.names()
    params = dict(model.named_parameters())
    sizes = [params[n].numel() for n in names]
    projection = RademacherProjection(sum(sizes), spec["dim"], spec["seed"])
    if spec["precondition"] == "adam":
        missing = [n for n in names if n not in adam]
        if missing:
            raise ValueError(f"warm-up optimizer state lacks {len(missing)} LoRA parameters, e.g. {missing[0]}")
        m = torch.cat([adam[n]["exp_avg"].flatten() for n in names]).to(device)
        v = torch.cat([adam[n]["exp_avg_sq"].flatten() for n in names]).to(device)
    projected, norms = [], []
    try:
        for batch in tqdm(batches, desc=desc, mininterval=10):
            batch = {k: val.to(device) for k, val in batch.items()}
            model.zero_grad(set_to_none=True)
            per_example_losses_sum(model, batch).backward()
            per = hooks.per_example()
            flat = torch.cat([per[n].reshape(per[n].shape[0], -1) for n in names], dim=1)
            del per  # B × D float32 each: not twice at once
            norms.append(flat.norm(dim=1).cpu())
            if spec["precondition"] == "adam":
                flat = adam_direction(flat, m, v)
            projected.append(projection(flat).cpu())
    finally:
        hooks.close()
    return {"projected": torch.cat(projected).numpy().astype(np.float32),
            "grad_norm": torch.cat(norms).numpy().astype(np.float32)}


def validation_batches(data: DataDir, tokenizer, processor, template, batch_size: int
                       ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The data folder's task validation examples, task by task in file order, collated exactly as pool
    examples are: (task of each example, its id, batches)."""
    tasks, ids, records = [], [], []
    for task in data.validation_tasks():
        for record in data.validation_items(task):
            tasks.append(task)
            ids.append(str(record["id"]))
            records.append(record)
    images = ImageLoader(data.validation_image_root, processor)
    collate, dataset = Collator(tokenizer.pad_token_id, images), SupervisedDataset(records, template, images)
    batches = [collate([dataset[j] for j in range(i, min(i + batch_size, len(records)))])
               for i in range(0, len(records), batch_size)]
    return np.array(tasks, dtype=str), np.array(ids, dtype=str), batches


def validation_features(model, data: DataDir, tokenizer, processor, template, spec: dict[str, Any],
                        batch_size: int, device: torch.device) -> dict[str, np.ndarray]:
    """LESS's validation gradients: per-example LoRA gradients of the validation examples at the warm-up
    checkpoint, plain SGD direction (never Adam-preconditioned), projected as the pool's are; {} without
    validation sets."""
    tasks, ids, batches = validation_batches(data, tokenizer, processor, template, batch_size)
    if not len(tasks):
        return {}
    out = gradient_features(model, batches, {}, {**spec, "precondition": "none"}, device, desc="validation")
    return {"meta_validation_projected": out["projected"], "meta_validation_grad_norm": out["grad_norm"],
            "meta_validation_task": tasks, "meta_validation_id": ids}


def extract_shard(job: ShardJob) -> dict[str, Any]:
    data, inputs, spec, model_cfg = job.data, job.inputs, job.spec, job.model_cfg
    shard, n_shards, batch_size, out, threads, device = (job.shard, job.shards, job.batch_size, job.out,
                                                         job.threads, job.device)
    spec = FEATURES["lora_gradients"].spec(spec)
    torch.set_num_threads(threads)
    warm = json.loads(Path(inputs["gradient_warmup"]).read_text())  # {"model": start weights, "warmup": dir}
    start = Path(warm["model"]) if "model" in warm else Path(warm["base"]) / "model"  # pointers before `start`
    model, tokenizer, processor, adam = load_warm_model(start, Path(warm["warmup"]), pass_dtype(job.dtype))
    rows, batches = shard_batches_for(data, start, model_cfg, range(len(data.pool)),
                                      shard, n_shards, batch_size)
    chunk = max(1, spec["chunk_batches"])
    parts = [f"batches{i:06d}" for i in range(0, len(batches), chunk)]

    def compute(part: str) -> dict[str, np.ndarray]:
        start = int(part[len("batches"):])
        sub = [batches[j] for j in range(start, min(start + chunk, len(batches)))]
        return gradient_features(model, sub, adam, spec, device_for(device),
                                 desc=f"gradients shard {shard}/{n_shards} {part}")

    # Validation gradients (few: seconds) ride along in shard 0's meta arrays; computed first, so bad
    # validation data stops the job before the long pass.
    validation = {}
    if shard == 0:
        validation = validation_features(model, data, tokenizer, processor,
                                         make_template(tokenizer, model, model_cfg["template"]), spec, batch_size,
                                         device_for(device))
    summary = run_shard(parts, compute, rows, out,
                        {"shard": shard, "shards": n_shards, "spec": spec, "dtype": job.dtype},
                        parts_are="rows", meta={**validation, **dtype_meta(job.dtype)})
    summary["validation_examples"] = int(len(validation.get("meta_validation_id", [])))
    log.info("gradients: %s", json.dumps(summary))
    return summary
