"""Per-example sentence embeddings from the proxy's last layer, from one pass over the whole pool (text-only
records included), for the embedding-based baselines (SemDeDup, Self-Sup prototypes, D2-Pruning).

Output of one shard: rows, and two (n, 1, d) float32 arrays, each row L2-normalised (the second axis is the one
checkpoint used):
  last  the last-layer hidden state (hidden_states[-1], i.e. after the model's final norm) at the example's last
        non-padding token — the usual causal-LM sentence embedding;
  mean  the mean of the last-layer hidden states over all non-padding positions, image tokens included.
Batches are right-padded (training.data.Collator) and the model is causal, so padding never reaches a real
position; the reductions below read only real positions and run in float32 whatever features.dtype is.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch

from selectbench.features import FEATURES, ShardJob
from selectbench.features.passes import checkpoint_from_spec, per_example_arrays, pool_pass

log = logging.getLogger(__name__)


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, S, d) last-layer states and the (B, S) mask of real tokens -> L2-normalised (B, d) float32 `last`
    (state at each row's last real token) and `mean` (masked mean over real tokens)."""
    hidden = hidden.float()
    mask = attention_mask.to(hidden.dtype)
    # last real position, not mask.sum()-1: correct for any padding side
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last_pos = torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(1)
    last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_pos]
    mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    return {"last": torch.nn.functional.normalize(last, dim=-1),
            "mean": torch.nn.functional.normalize(mean, dim=-1)}


def embeddings_for_checkpoint(model, batches, device: torch.device, desc: str = "") -> dict[str, np.ndarray]:
    def per_batch(model, batch):
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       pixel_values=batch.get("pixel_values"), output_hidden_states=True).hidden_states[-1]
        return pool_hidden(hidden, batch["attention_mask"])

    arrays = per_example_arrays(model, batches, device, desc, per_batch)
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def extract_shard(job: ShardJob) -> dict[str, Any]:
    spec = FEATURES["proxy_embeddings"].spec(job.spec)
    checkpoint = checkpoint_from_spec(job, "proxy_embeddings", spec["checkpoint"])
    summary = pool_pass(job, checkpoint, spec, lambda model, batches, device, desc:
                        embeddings_for_checkpoint(model, batches, device, desc=desc))
    log.info("proxy embeddings: %s", json.dumps(summary))
    return summary
