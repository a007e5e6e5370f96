"""XMAS's alignment trajectories: for every image example and every proxy checkpoint, the top-k singular values
of its text×image attention block (and its answer loss, from the same forward pass).

Output of one shard: rows (pool row indices), sv (n, T, L', k) with L' = 1 when layers are summed and one per
layer when concatenated, loss (n, T), n_text (n,), n_image (n,), meta_checkpoints (T,).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from selectbench.data.images import ImageLoader
from selectbench.data.prepare import DataDir
from selectbench.features import FEATURES
from selectbench.features.attention import BatchLayout, record_blocks, top_singular_values
from selectbench.features.sharding import clear, plan_batches, run_parts, save_npz, shard_batches
from selectbench.models.build import load_checkpoint
from selectbench.models.conversation import IGNORE_INDEX
from selectbench.models.stages import make_template
from selectbench.training.data import Collator, SupervisedDataset

log = logging.getLogger(__name__)



CACHE_EXAMPLES = 20_000


class _LazyBatches:
    """A sequence of batches built on access (images decoded each time)."""

    def __init__(self, make, n: int):
        self.make, self.n = make, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return (self.make(i) for i in range(self.n))


def example_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over each example's supervised (answer) tokens; padding never counts."""
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    token = torch.nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels.clamp(min=0),
                                              reduction="none")
    mask = shift_labels != IGNORE_INDEX
    return (token * mask).sum(1) / mask.sum(1).clamp(min=1)


def device_for(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.inference_mode()
def trajectories_for_checkpoint(model, batches: list[dict[str, torch.Tensor]], spec: dict[str, Any],
                                device: torch.device, desc: str = "") -> dict[str, np.ndarray]:
    """One pass of one checkpoint over prepared batches → sv (n, L', k), loss, n_text, n_image."""
    model.eval().to(device)
    image_token_id = model.config.image_token_id
    sv, loss, n_text, n_image = [], [], [], []
    with record_blocks(model, spec["attention"], spec["layers"], spec["combine"]) as recorder:
        for batch in tqdm(batches, desc=desc, mininterval=10):
            batch = {k: v.to(device) for k, v in batch.items()}
            layout = BatchLayout.from_inputs(batch["input_ids"], batch["attention_mask"], image_token_id)
            recorder.reset(layout)
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        pixel_values=batch["pixel_values"])
            sv.append(top_singular_values(recorder.result(), spec["k"], spec["svd"]).cpu())
            loss.append(example_losses(out.logits, batch["labels"]).cpu())
            n_text.append(layout.text_rows.sum(1).cpu())
            n_image.append(layout.image_valid.sum(1).cpu())
    return {"sv": torch.cat(sv).numpy().astype(np.float32), "loss": torch.cat(loss).numpy().astype(np.float32),
            "n_text": torch.cat(n_text).numpy(), "n_image": torch.cat(n_image).numpy()}


def extract_shard(data: DataDir, inputs: dict[str, Path], spec: dict[str, Any], model_cfg: dict[str, Any],
                  shard: int, n_shards: int, batch_size: int, out: Path, threads: int = 1,
                  device: str = "auto") -> dict[str, Any]:
    """Trajectories of this shard's examples over every proxy checkpoint; resumable per checkpoint."""
    spec = FEATURES["attention_trajectories"].spec(spec)
    torch.set_num_threads(threads)
    checkpoints = json.loads(Path(inputs["proxy_checkpoints"]).read_text())
    pool = data.pool
    image_rows = [i for i, r in enumerate(pool) if "image" in r]
    batches = shard_batches(plan_batches(pool, image_rows, batch_size), shard, n_shards)
    rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    model, tokenizer, processor = load_checkpoint(Path(checkpoints[0]))
    template = make_template(tokenizer, model, model_cfg["template"])
    images = ImageLoader(data.image_root, processor)
    collate = Collator(tokenizer.pad_token_id, images)
    dataset = SupervisedDataset([pool[r] for r in rows], template, images)
    offsets = np.cumsum([0] + [len(b) for b in batches])

    def make_batch(i: int) -> dict[str, torch.Tensor]:
        return collate([dataset[j] for j in range(offsets[i], offsets[i + 1])])

    # Small shards decode their images once for all checkpoints; large ones (paper scale) re-read them per
    # checkpoint rather than hold every pixel in memory.
    cached = len(rows) <= CACHE_EXAMPLES
    prepared = [make_batch(i) for i in range(len(batches))] if cached else _LazyBatches(make_batch, len(batches))
    t0 = time.time()

    def compute(checkpoint: str) -> dict[str, np.ndarray]:
        ckpt_model = load_checkpoint(Path(checkpoint), with_processors=False)
        return trajectories_for_checkpoint(ckpt_model, prepared, spec, device_for(device),
                                           desc=f"shard {shard}/{n_shards} {Path(checkpoint).name}")

    work = Path(out).with_name(Path(out).name + ".parts")
    parts = run_parts(checkpoints, compute, work)
    per = [parts[c] for c in checkpoints]
    arrays = {"rows": rows, "sv": np.stack([p["sv"] for p in per], axis=1),
              "loss": np.stack([p["loss"] for p in per], axis=1),
              "n_text": per[0]["n_text"], "n_image": per[0]["n_image"],
              "meta_checkpoints": np.array([Path(c).name for c in checkpoints])}
    save_npz(Path(out), arrays)
    clear(work)
    summary = {"shard": shard, "shards": n_shards, "examples": int(len(rows)), "batches": len(batches),
               "checkpoints": len(checkpoints), "seconds": time.time() - t0, "spec": spec}
    log.info("trajectories: %s", json.dumps(summary))
    return summary
