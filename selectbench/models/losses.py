"""Answer-token losses of a LLaVA batch: what training weights and what the feature passes score. Only the
assistant's answer tokens are supervised; prompts and padding carry IGNORE_INDEX."""

from __future__ import annotations

import torch

from selectbench.models.conversation import IGNORE_INDEX


def answer_token_targets(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token view of a batch: (B, S-1, V) float logits, (B, S-1) targets (0 where unsupervised), and the
    mask of supervised (assistant answer) tokens; padding and prompts are never supervised."""
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    return shift_logits, shift_labels.clamp(min=0), mask


def example_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over each example's supervised (answer) tokens."""
    shift_logits, targets, mask = answer_token_targets(logits, labels)
    token = torch.nn.functional.cross_entropy(shift_logits.transpose(1, 2), targets, reduction="none")
    return (token * mask).sum(1) / mask.sum(1).clamp(min=1)
