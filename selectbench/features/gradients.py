"""LESS-style per-example gradient features of the proxy (Xia et al. 2024; GraNd, TIVE, ICONS).

1. Warm-up (once per dataset and spec): a short LoRA run of the proxy's stage-1 base on a seeded fraction
   of the pool; the adapter and the Adam moments are kept.
2. Per-example LoRA gradients with training's label masking (each example's loss is the mean over its own
   answer tokens, as if alone in its batch), computed for a whole batch in one backward pass: hooks on every
   LoRA linear keep its inputs and output gradients, and the per-example weight gradient of a linear layer is
   Σ_t δ_t ⊗ x_t (exact; no loop of one backward per example, see benchmarks/gradient_pass.py).
3. Optional Adam preconditioning from the warm-up state (LESS: m'/(√v' + ε) with m', v' updated by the
   example's gradient), a seeded Rademacher projection to `dim` dimensions, stored with the raw gradient's
   norm (GraNd). Shards save every chunk of batches as it finishes, so an interrupted run resumes.

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
from selectbench.features.passes import device_for, example_losses, run_shard, shard_batches_for
from selectbench.models.build import load_model
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


def run_warmup(data: DataDir, base_dir: Path, model_cfg: dict[str, Any], spec: dict[str, Any], out_dir: Path,
               threads: int = 1) -> dict[str, Any]:
    """LoRA warm-up of the proxy base on a seeded `fraction` of the pool (config gradient_warmup: fraction,
    epochs, lr, lora_r, seed); saves adapter/ (peft format) and adam_state.pt ({parameter name: exp_avg,
    exp_avg_sq, step}) under out_dir."""
    from selectbench.training.train import train

    model, tokenizer, processor = load_model(Path(base_dir) / "model", threads)
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
    summary = {"rows": int(len(rows)), "spec": spec, "train_loss": summary["train_loss"]}
    (out_dir / "warmup.json").write_text(json.dumps(summary, indent=1))
    return summary


def load_warm_model(base_dir: Path, warmup_dir: Path):
    """The proxy base with the warm-up adapter (unmerged: its LoRA weights are the parameters we differentiate)."""
    from peft import PeftModel

    model, tokenizer, processor = load_model(Path(base_dir) / "model")
    model = PeftModel.from_pretrained(model, Path(warmup_dir) / "adapter", is_trainable=True)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name
    adam = torch.load(Path(warmup_dir) / "adam_state.pt")
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
    never needs all of P at once); blocks are cached while they fit in `cache_bytes`."""

    def __init__(self, total_dim: int, dim: int, seed: int, block: int = 1 << 14, cache_bytes: int = 1 << 28):
        self.total_dim, self.dim, self.seed, self.block = total_dim, dim, seed, block
        self.cache: dict[int, torch.Tensor] | None = {} if total_dim * dim <= cache_bytes else None

    def _block(self, i: int, device) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        rows = min(self.block, self.total_dim - i * self.block)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        p = (torch.randint(0, 2, (rows, self.dim), generator=g, dtype=torch.int8) * 2 - 1).to(device)
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
    warm = json.loads(Path(inputs["gradient_warmup"]).read_text())  # {"base": proxy base dir, "warmup": dir}
    model, tokenizer, processor, adam = load_warm_model(Path(warm["base"]), Path(warm["warmup"]))
    rows, batches = shard_batches_for(data, Path(warm["base"]) / "model", model_cfg, range(len(data.pool)),
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
    summary = run_shard(parts, compute, rows, out, {"shard": shard, "shards": n_shards, "spec": spec},
                        parts_are="rows", meta=validation)
    summary["validation_examples"] = int(len(validation.get("meta_validation_id", [])))
    log.info("gradients: %s", json.dumps(summary))
    return summary
