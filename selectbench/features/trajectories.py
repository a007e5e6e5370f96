"""XMAS's alignment trajectories: for every image example and every proxy checkpoint, the top-k singular values
of its text×image attention block (and its answer loss, from the same forward pass).

Output of one shard: rows (pool row indices), sv (n, T, L', k) with L' = 1 when layers are summed and one per
layer when concatenated, loss (n, T), n_text (n, T), n_image (n, T), meta_checkpoints (T,).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from selectbench.features import FEATURES, ShardJob
from selectbench.features.attention import BatchLayout, randomized_svd_pass, record_blocks, top_singular_values
from selectbench.features.passes import device_for, dtype_meta, pass_dtype, read_checkpoints, \
    run_shard, shard_batches_for
from selectbench.models.losses import example_losses
from selectbench.models.build import load_checkpoint

log = logging.getLogger(__name__)


@torch.inference_mode()
def trajectories_for_checkpoint(model, batches: list[dict[str, torch.Tensor]], spec: dict[str, Any],
                                device: torch.device, desc: str = "") -> dict[str, np.ndarray]:
    """One pass of one checkpoint over prepared batches → sv (n, L', k), loss, n_text, n_image."""
    model.eval().to(device)
    image_token_id = model.config.image_token_id
    sv, loss, n_text, n_image = [], [], [], []
    with (record_blocks(model, spec["attention"], spec["layers"], spec["combine"]) as recorder,
          randomized_svd_pass(spec["svd"], device)):
        for batch in tqdm(batches, desc=desc, mininterval=10):
            batch = {k: v.to(device) for k, v in batch.items()}
            layout = BatchLayout.from_inputs(batch["input_ids"], batch["attention_mask"], image_token_id,
                                             spec["skip_after_image"])
            recorder.reset(layout)
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        pixel_values=batch["pixel_values"])
            sv.append(top_singular_values(recorder.result(), spec["k"], spec["svd"]).cpu())
            loss.append(example_losses(out.logits, batch["labels"]).cpu())
            n_text.append(layout.text_rows.sum(1).cpu())
            n_image.append(layout.image_valid.sum(1).cpu())
    return {"sv": torch.cat(sv).numpy().astype(np.float32), "loss": torch.cat(loss).numpy().astype(np.float32),
            "n_text": torch.cat(n_text).numpy(), "n_image": torch.cat(n_image).numpy()}


def extract_shard(job: ShardJob) -> dict[str, Any]:
    """Trajectories of this shard's image examples over every proxy checkpoint; resumable per checkpoint."""
    data, inputs, spec, model_cfg = job.data, job.inputs, job.spec, job.model_cfg
    shard, n_shards, batch_size, out, threads, device = (job.shard, job.shards, job.batch_size, job.out,
                                                         job.threads, job.device)
    spec = FEATURES["attention_trajectories"].spec(spec)
    torch.set_num_threads(threads)
    checkpoints = read_checkpoints(inputs["proxy_checkpoints"])
    image_rows = [i for i, r in enumerate(data.pool) if "image" in r]
    rows, batches = shard_batches_for(data, Path(checkpoints[0]), model_cfg, image_rows, shard, n_shards,
                                      batch_size)

    dtype = pass_dtype(job.dtype)

    def compute(checkpoint: str) -> dict[str, np.ndarray]:
        model = load_checkpoint(Path(checkpoint), with_processors=False, dtype=dtype)
        return trajectories_for_checkpoint(model, batches, spec, device_for(device),
                                           desc=f"shard {shard}/{n_shards} {Path(checkpoint).name}")

    summary = run_shard(checkpoints, compute, rows, out,
                        {"shard": shard, "shards": n_shards, "spec": spec, "dtype": job.dtype},
                        meta=dtype_meta(job.dtype))
    log.info("trajectories: %s", json.dumps(summary))
    return summary
