"""CLIP score of every pool record: cosine between the CLIP image embedding and the CLIP text embedding of the
record's conversation text (DataComp's CLIP-score filter). Text-only records have no image: their score is
NaN, so ranking methods take them only after every scored record (see selection.base.band_indices).

Output of one shard: rows, clip_score (n, 1). The clip_embeddings feature (Self-Filter's score-net input) stores
instead embedding (n, 1, 2d): the unit image embedding and the unit text embedding side by side, zeros for the
image half of a text-only record.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from selectbench.data.images import ImageLoader
from selectbench.features import ShardJob
from selectbench.features.passes import device_for, dtype_meta, pass_dtype, run_shard
from selectbench.features.sharding import plan_batches, shard_batches
from selectbench.models.clip import encode_texts, load_clip, record_text

log = logging.getLogger(__name__)


def model_source(pointer: Path) -> str:
    """The clip_model artifact is a small JSON naming the model: a local folder or a cached Hub id."""
    return json.loads(Path(pointer).read_text())["source"]


def _text_features(model, tokenizer, recs: list[dict], device: torch.device, max_length: int) -> torch.Tensor:
    """CLIP's pooled text embeddings of the records' conversation text, float32."""
    text = encode_texts(tokenizer, [record_text(r) for r in recs], max_length)
    emb = model.get_text_features(**{k: v.to(device) for k, v in text.items()})
    return getattr(emb, "pooler_output", emb).float()


def _image_features(model, images: ImageLoader, recs: list[dict], device: torch.device) -> torch.Tensor:
    """CLIP's pooled image embeddings of records that have an image, float32."""
    pixels = images.pixel_values([images.load(r["image"], r.get("id")) for r in recs])
    emb = model.get_image_features(pixel_values=pixels.to(device))
    return getattr(emb, "pooler_output", emb).float()


@torch.inference_mode()
def _per_batch(model, records: list[dict], batches: list[np.ndarray], device: torch.device, desc: str,
               compute) -> list[np.ndarray]:
    """compute(records of the batch) for every batch, the model on device."""
    model.to(device)
    return [compute([records[i] for i in batch]) for batch in tqdm(batches, desc=desc, mininterval=10)]


def clip_scores(model, tokenizer, images: ImageLoader, records: list[dict], batches: list[np.ndarray],
                device: torch.device, max_length: int, desc: str = "") -> np.ndarray:
    def compute(recs: list[dict]) -> np.ndarray:
        scores = np.full(len(recs), np.nan, dtype=np.float32)
        with_image = [i for i, r in enumerate(recs) if "image" in r]
        if with_image:
            pictured = [recs[i] for i in with_image]
            cos = torch.nn.functional.cosine_similarity(_image_features(model, images, pictured, device),
                                                        _text_features(model, tokenizer, pictured, device,
                                                                       max_length), dim=-1)
            scores[with_image] = cos.cpu().numpy()
        return scores

    out = _per_batch(model, records, batches, device, desc, compute)
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def clip_embeddings(model, tokenizer, images: ImageLoader, records: list[dict], batches: list[np.ndarray],
                    device: torch.device, max_length: int, desc: str = "") -> np.ndarray:
    """(n, 2d): [unit image embedding, unit text embedding] per record (image half 0 without an image)."""
    def compute(recs: list[dict]) -> np.ndarray:
        text_emb = torch.nn.functional.normalize(_text_features(model, tokenizer, recs, device, max_length), dim=-1)
        image_emb = torch.zeros_like(text_emb)
        with_image = [i for i, r in enumerate(recs) if "image" in r]
        if with_image:
            image_emb[with_image] = torch.nn.functional.normalize(
                _image_features(model, images, [recs[i] for i in with_image], device), dim=-1)
        return torch.cat([image_emb, text_emb], dim=-1).cpu().numpy()

    out = _per_batch(model, records, batches, device, desc, compute)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def extract_shard(job: ShardJob) -> dict[str, Any]:
    return _clip_pass(job, "clip_score", clip_scores)


def extract_embeddings_shard(job: ShardJob) -> dict[str, Any]:
    return _clip_pass(job, "embedding", clip_embeddings)


def _clip_pass(job: ShardJob, key: str, per_shard) -> dict[str, Any]:
    """One CLIP pass over the job's shard: per_shard(model, tokenizer, images, records, batches, ...) → key."""
    data, inputs = job.data, job.inputs
    shard, n_shards, batch_size, out, threads, device = (job.shard, job.shards, job.batch_size, job.out,
                                                         job.threads, job.device)
    torch.set_num_threads(threads)
    source = model_source(inputs["clip_model"])
    batches = shard_batches(plan_batches(data.pool, range(len(data.pool)), batch_size), shard, n_shards)
    rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    local = [np.arange(i, i + len(b)) for i, b in zip(np.cumsum([0] + [len(b) for b in batches]), batches)]

    def compute(_: str) -> dict[str, np.ndarray]:
        model, tokenizer, processor = load_clip(source)
        model = model.to(pass_dtype(job.dtype))  # features.dtype; the cosine is taken in float32
        max_length = model.config.text_config.max_position_embeddings
        images = ImageLoader(data.image_root, processor)
        records = [data.pool[r] for r in rows]
        return {key: per_shard(model, tokenizer, images, records, local, device_for(device), max_length,
                               desc=f"clip shard {shard}/{n_shards}")}

    summary = run_shard([source], compute, rows, out,
                        {"shard": shard, "shards": n_shards, "model": source, "dtype": job.dtype},
                        meta=dtype_meta(job.dtype))
    log.info("clip %s: %s", key, json.dumps(summary))
    return summary
