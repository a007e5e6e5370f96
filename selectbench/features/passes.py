"""What every sharded proxy pass shares: this shard's rows and batches, one pass per checkpoint (resumable),
and the atomic publication of the shard file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from selectbench.data.images import ImageLoader
from selectbench.data.datadir import DataDir
from selectbench.features.sharding import clear, parts_dir, plan_batches, run_parts, save_npz, shard_batches
from transformers import LlavaConfig

from selectbench.models.build import load_processors
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, SupervisedDataset

CACHE_EXAMPLES = 20_000  # shards up to this size decode their images once for every checkpoint


class LazyBatches:
    """Batches built on access (images decoded each time): large shards never hold every pixel in memory."""

    def __init__(self, make: Callable[[int], dict], n: int):
        self.make, self.n = make, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return (self.make(i) for i in range(self.n))

    def __getitem__(self, i: int) -> dict:
        return self.make(i)


def shard_batches_for(data: DataDir, checkpoint: Path, model_cfg: dict[str, Any], rows: Sequence[int],
                      shard: int, n_shards: int, batch_size: int) -> tuple[np.ndarray, Sequence[dict]]:
    """This shard's pool rows (in batch order) and their collated batches, encoded with the proxy's template.
    Batches are planned for all `rows` first, so an example's batch does not depend on the shard count."""
    batches = shard_batches(plan_batches(data.pool, rows, batch_size), shard, n_shards)
    mine = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    tokenizer, processor = load_processors(checkpoint)
    template = make_template(tokenizer, LlavaConfig.from_pretrained(checkpoint), model_cfg["template"])
    images = ImageLoader(data.image_root, processor)
    collate = Collator(tokenizer.pad_token_id, images)
    dataset = SupervisedDataset([data.pool[r] for r in mine], template, images)
    offsets = np.cumsum([0] + [len(b) for b in batches])

    def make(i: int) -> dict:
        return collate([dataset[j] for j in range(offsets[i], offsets[i + 1])])

    if len(mine) <= CACHE_EXAMPLES:
        return mine, [make(i) for i in range(len(batches))]
    return mine, LazyBatches(make, len(batches))


PASS_DTYPES = ("float32", "bfloat16", "float16")


def pass_dtype(name: str) -> torch.dtype:
    """The dtype a feature pass loads its model's weights in (config features.dtype: the proxy's, CLIP's). Half
    precision halves the memory and runs the matmuls on tensor cores; the suite's reductions cast to float32
    (attention scores before their softmax, blocks before the SVD, logits before the loss, per-example gradients
    before Adam and the projection, CLIP's cosine), so only the model's own activations are rounded."""
    if name not in PASS_DTYPES:
        raise ValueError(f"features.dtype must be one of {PASS_DTYPES}, got {name!r}")
    return getattr(torch, name)


def dtype_meta(name: str) -> dict[str, np.ndarray]:
    """The pass's dtype as a meta_ array of the feature file (gather keeps it), so the file says how it was made."""
    return {"meta_dtype": np.array(name)}


def device_for(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_shard(parts: list[str], compute: Callable[[str], dict[str, np.ndarray]], rows: np.ndarray,
              out: Path, summary: dict[str, Any], parts_are: str = "checkpoints",
              meta: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """compute(part) for each part, each saved as it finishes so a killed job resumes, then published with the
    rows (and any extra meta_* arrays). parts_are='checkpoints': each part covers all rows, stacked on axis 1
    (one slot per checkpoint); 'rows': parts are consecutive chunks of the rows, concatenated, one slot on axis 1."""
    t0 = time.time()
    work = parts_dir(Path(out))
    done = run_parts(parts, compute, work)
    per = [done[p] for p in parts]
    if parts_are == "checkpoints":
        arrays = {key: np.stack([p[key] for p in per], axis=1) for key in per[0]} if per else {}
        arrays["meta_checkpoints"] = np.array([Path(c).name for c in parts])
    elif parts_are == "rows":
        arrays = {key: np.concatenate([p[key] for p in per])[:, None] for key in per[0]} if per else {}
    else:
        raise ValueError(f"parts_are must be checkpoints or rows, got {parts_are!r}")
    save_npz(Path(out), {"rows": rows, **arrays, **(meta or {})})
    clear(work)
    return {**summary, "examples": int(len(rows)), parts_are: len(parts), "seconds": time.time() - t0}


def read_checkpoints(listing: Path) -> list[str]:
    return json.loads(Path(listing).read_text())


def checkpoint_from_spec(job, feature: str, index: int) -> str:
    """The proxy checkpoint a one-checkpoint feature reads: spec["checkpoint"] indexes the fine-tune's list (-1: its
    end); out of range is an error naming the feature."""
    listing = read_checkpoints(job.inputs["proxy_checkpoints"])
    if not -len(listing) <= int(index) < len(listing):
        raise ValueError(f"{feature}: checkpoint {index} out of range; the proxy saved {len(listing)}")
    return listing[int(index)]


def pool_pass(job, checkpoint: str, spec: dict[str, Any],
              per_checkpoint: Callable[[torch.nn.Module, Any, torch.device, str], dict[str, np.ndarray]],
              meta: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """One forward pass of one proxy checkpoint over every pool record of the job's shard (text-only included),
    published by run_shard: the common skeleton of proxy_token_stats, proxy_embeddings and coincide_features.
    per_checkpoint(model, batches, device, desc) returns the shard's row-aligned arrays."""
    from selectbench.models.build import load_checkpoint

    torch.set_num_threads(job.threads)
    rows, batches = shard_batches_for(job.data, Path(checkpoint), job.model_cfg, range(len(job.data.pool)),
                                      job.shard, job.shards, job.batch_size)
    dtype = pass_dtype(job.dtype)

    def compute(path: str) -> dict[str, np.ndarray]:
        model = load_checkpoint(Path(path), with_processors=False, dtype=dtype)
        return per_checkpoint(model, batches, device_for(job.device), f"shard {job.shard}/{job.shards}")

    return run_shard([checkpoint], compute, rows, job.out,
                     {"shard": job.shard, "shards": job.shards, "spec": spec, "dtype": job.dtype},
                     meta={**dtype_meta(job.dtype), **(meta or {})})


@torch.inference_mode()
def per_example_arrays(model, batches, device: torch.device, desc: str,
                       per_batch: Callable[[torch.nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
                       ) -> dict[str, np.ndarray]:
    """per_batch(model, batch) on every batch (moved to device), its per-example tensors concatenated over the
    batches as numpy arrays: the loop of the one-checkpoint passes (token statistics, embeddings)."""
    model.eval().to(device)
    out: dict[str, list] = {}
    for batch in tqdm(batches, desc=desc, mininterval=10):
        batch = {k: v.to(device) for k, v in batch.items()}
        for key, value in per_batch(model, batch).items():
            out.setdefault(key, []).append(value.cpu())
    return {k: torch.cat(v).numpy() for k, v in out.items()}
