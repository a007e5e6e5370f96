"""COINCIDE's per-example features (Lee et al., EMNLP 2024): what the proxy's attention writes into the residual
stream, pooled separately over the image and over the text.

For each chosen layer, a forward hook on `self_attn.o_proj` gives its output (B, S, d). Per example it is averaged
over the image-token positions and, separately, over the text tokens after the image block (every non-padding
token after the last image token: the "\\n" of "<image>\\n", the question and every later turn, answers
included, as the release's `language_length` slice), each half → tanh → L2-normalised → ÷ √(2L). The release
divides by √(2 · number of layers), √10 for its 5 layers (one per half), so an image example's whole vector has
unit norm.

Text-only records have no image block; the release reads its fixed image window past their prompt (text and
padding, so batch-dependent) and their text half is NaN, then 0. Here their image half is zeros and their text
half is the mean over every non-padding token (the system prompt included: there is no image to start after).

Output of one shard: rows, coincide (n, 1, 2·L·d) float32, layer-major with [image, text] inside each layer as
the release lays it out, n_image (n, 1), n_text (n, 1) tokens pooled, meta_layers (L,) the layers used; the second
axis is the one checkpoint used. float32, not the release's float16: at the embedded scale memory is no concern.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm
from transformers import LlavaConfig

from selectbench.features import FEATURES, ShardJob
from selectbench.features.attention import decoder_layers
from selectbench.features.passes import checkpoint_from_spec, pool_pass

log = logging.getLogger(__name__)


def chosen_layers(spec_layers: list[int], n_layers: int) -> list[int]:
    """The spec's layer list, validated against the proxy's depth (negative indices count from the end); order and
    duplicates are kept out: sorted distinct indices, as the release's ascending list."""
    if not spec_layers:
        raise ValueError("coincide_features: layers must name at least one layer")
    bad = [i for i in spec_layers if not isinstance(i, int) or not -n_layers <= i < n_layers]
    if bad:
        raise ValueError(f"coincide_features: layers {bad} out of range for a proxy with {n_layers} layers")
    return sorted({i % n_layers for i in spec_layers})


def pooling_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  image_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, S) float masks of the image positions and of the text positions pooled (padding never)."""
    valid = attention_mask.bool()
    image = (input_ids == image_token_id) & valid
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    last_image = torch.where(image, positions, torch.full_like(positions, -1)).max(dim=1).values
    text = valid & (positions > last_image[:, None])  # text-only rows: last_image = -1, every valid token
    return image.float(), text.float()


def pooled_half(output: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions → tanh → L2-normalised; zeros where the mask is empty."""
    count = mask.sum(1, keepdim=True)
    mean = (output.float() * mask[..., None]).sum(1) / count.clamp(min=1)
    return torch.nn.functional.normalize(torch.tanh(mean), dim=-1) * (count > 0)


@contextmanager
def o_proj_outputs(model, layers: list[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Hooks on the chosen layers' o_proj: the dict holds each layer's latest output (B, S, d)."""
    modules = decoder_layers(model)
    seen: dict[int, torch.Tensor] = {}
    handles = [modules[i].self_attn.o_proj.register_forward_hook(
        lambda _m, _i, out, i=i: seen.__setitem__(i, out)) for i in layers]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@torch.inference_mode()
def features_for_checkpoint(model, batches, layers: list[int], device: torch.device,
                            desc: str = "") -> dict[str, np.ndarray]:
    """One pass over prepared batches → coincide (n, 2·L·d), n_image, n_text."""
    model.eval().to(device)
    image_token_id = model.config.image_token_id
    scale = 1.0 / np.sqrt(2 * len(layers))
    feats, n_image, n_text = [], [], []
    with o_proj_outputs(model, layers) as seen:
        for batch in tqdm(batches, desc=desc, mininterval=10):
            batch = {k: v.to(device) for k, v in batch.items()}
            image, text = pooling_masks(batch["input_ids"], batch["attention_mask"], image_token_id)
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  pixel_values=batch.get("pixel_values"))
            halves = [torch.cat([pooled_half(seen[i], image), pooled_half(seen[i], text)], dim=-1) for i in layers]
            feats.append((torch.cat(halves, dim=-1) * scale).cpu())
            n_image.append(image.sum(1).long().cpu())
            n_text.append(text.sum(1).long().cpu())
            seen.clear()
    return {"coincide": torch.cat(feats).numpy().astype(np.float32), "n_image": torch.cat(n_image).numpy(),
            "n_text": torch.cat(n_text).numpy()}


def extract_shard(job: ShardJob) -> dict[str, Any]:
    """COINCIDE features of this shard's records (text-only included) at one proxy checkpoint."""
    spec = FEATURES["coincide_features"].spec(job.spec)
    checkpoint = checkpoint_from_spec(job, "coincide_features", spec["checkpoint"])
    depth = LlavaConfig.from_pretrained(checkpoint).text_config.num_hidden_layers
    layers = chosen_layers(list(spec["layers"]), depth)  # checked before any pass
    summary = pool_pass(job, checkpoint, spec, lambda model, batches, device, desc:
                        features_for_checkpoint(model, batches, layers, device, desc=desc),
                        meta={"meta_layers": np.array(layers)})
    log.info("coincide features: %s", json.dumps(summary))
    return summary
