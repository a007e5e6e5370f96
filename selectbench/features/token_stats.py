"""Per-example answer-token statistics from one pass over the whole pool (text-only records included), shared by
the perplexity, EL2N, HL and D2-Pruning baselines: under a proxy checkpoint (proxy_token_stats) or under the target
fine-tuned on the whole pool (target_token_stats, the full-data reference run's model).

Output of one shard: rows, nll (n, 1) mean answer-token cross-entropy, el2n (n, 1) mean over answer tokens of
‖softmax(logits) − onehot(target)‖₂, margin (n, 1) mean over answer tokens of p(target) − max p(other) (the
single-pass AUM that D2-Pruning's importance is in COINCIDE's code), n_answer (n, 1) supervised tokens; the second
axis is the one checkpoint used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selectbench.features import FEATURES, ShardJob
from selectbench.features.passes import checkpoint_from_spec, per_example_arrays, pool_pass
from selectbench.models.losses import answer_token_targets

log = logging.getLogger(__name__)


def token_statistics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example means over supervised answer tokens (NaN for an example without any)."""
    shift_logits, targets, mask = answer_token_targets(logits, labels)
    logp = torch.log_softmax(shift_logits, dim=-1)
    p = logp.exp()
    logp_target = logp.gather(-1, targets[..., None])[..., 0]
    p_target = logp_target.exp()
    # ‖p − e_y‖² = Σ p² − 2 p_y + 1
    el2n = ((p * p).sum(-1) - 2 * p_target + 1).clamp(min=0).sqrt()
    # the largest other probability from the top two, without a second (B, S, V) copy of p
    top = p.topk(2, dim=-1)
    p_other = torch.where(top.indices[..., 0] == targets, top.values[..., 1], top.values[..., 0])
    count = mask.sum(1)
    denom = count.clamp(min=1)

    def mean(x: torch.Tensor) -> torch.Tensor:
        value = (x * mask).sum(1) / denom
        return torch.where(count > 0, value, torch.full_like(value, float("nan")))

    return {"nll": mean(-logp_target), "el2n": mean(el2n), "margin": mean(p_target - p_other), "n_answer": count}


def statistics_for_checkpoint(model, batches, device: torch.device, desc: str = "") -> dict[str, np.ndarray]:
    def per_batch(model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       pixel_values=batch.get("pixel_values")).logits
        return token_statistics(logits, batch["labels"])

    arrays = per_example_arrays(model, batches, device, desc, per_batch)
    return {k: v.astype(np.int64 if k == "n_answer" else np.float32) for k, v in arrays.items()}


def extract_shard(job: ShardJob) -> dict[str, Any]:
    spec = FEATURES["proxy_token_stats"].spec(job.spec)
    checkpoint = checkpoint_from_spec(job, "proxy_token_stats", spec["checkpoint"])
    summary = pool_pass(job, checkpoint, spec, lambda model, batches, device, desc:
                        statistics_for_checkpoint(model, batches, device, desc=desc))
    log.info("token statistics: %s", json.dumps(summary))
    return summary


def extract_target_shard(job: ShardJob) -> dict[str, Any]:
    """The statistics under the full-data target: the published model beside the reference run's summary."""
    spec = FEATURES["target_token_stats"].spec(job.spec)
    model_dir = Path(job.inputs["target_full"]).parent / "model"
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"target_token_stats: no published model in {model_dir} (the full-data run's)")
    summary = pool_pass(job, str(model_dir), spec, lambda model, batches, device, desc:
                        statistics_for_checkpoint(model, batches, device, desc=desc))
    log.info("target token statistics: %s", json.dumps(summary))
    return summary
