"""Text×image cross-modal attention blocks of a LLaVA-style model, computed from one forward pass without
materialising any layer's full attention map (no output_attentions=True).

Two definitions (see XMAS, arXiv 2510.01454, and its released code):

- ``released``: forward hooks on every layer's q_proj and k_proj. Per layer, logits = K·Qᵀ / √width with the
  full-width (heads merged) projections, no RoPE, no causal mask, softmax over the last axis (the query
  positions). Rows are the text tokens after the image (as keys), columns the image tokens (as queries):
  exactly the orientation the released helper produces through its swapped arguments. Unlike the release,
  padding never enters the softmax or the rows.
- ``paper``: standard attention, text-token queries over all earlier keys with RoPE and the causal mask,
  per head, then averaged over heads; the block keeps the image-key columns. Captured through transformers'
  attention interface, so the queries and keys are exactly the (rotated, grouped) ones the model uses.

Blocks come out zero-padded to (batch, rows, image tokens); zero rows and columns do not change singular values,
so a batch of examples of different lengths is decomposed in one batched call.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch

ATTENTIONS = ("released", "paper")
CAPTURE_IMPLEMENTATION = "selectbench_block_capture"


@dataclass
class BatchLayout:
    """Where the text rows and image columns of each example of a right- or left-padded batch are."""

    valid: torch.Tensor       # (B, S) bool: not padding
    text_rows: torch.Tensor   # (B, S) bool: text tokens after the example's image block (and the skipped ones)
    image_index: torch.Tensor  # (B, I) long: positions of the image tokens (0 where an example has fewer)
    image_valid: torch.Tensor  # (B, I) bool
    row_start: int            # first position that is a text row in any example

    @classmethod
    def from_inputs(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int,
                    skip_after_image: int = 0) -> "BatchLayout":
        """skip_after_image: tokens right after the image block that are not rows (the release skips one, the
        "\\n" of "<image>\\n", through its hard-coded slice)."""
        valid = attention_mask.bool()
        is_image = (input_ids == image_token_id) & valid
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        last_image = torch.where(is_image, positions, torch.full_like(positions, -1)).max(dim=1).values
        text_rows = valid & (positions > last_image[:, None] + skip_after_image) & (last_image[:, None] >= 0)
        counts = is_image.sum(dim=1)
        width = int(counts.max()) if len(counts) else 0
        image_index = torch.zeros((input_ids.shape[0], width), dtype=torch.long, device=input_ids.device)
        image_valid = torch.zeros((input_ids.shape[0], width), dtype=torch.bool, device=input_ids.device)
        for b in range(input_ids.shape[0]):
            idx = is_image[b].nonzero().flatten()
            image_index[b, :len(idx)] = idx
            image_valid[b, :len(idx)] = True
        rows_any = text_rows.any(dim=0).nonzero().flatten()
        row_start = int(rows_any[0]) if len(rows_any) else input_ids.shape[1]
        return cls(valid, text_rows, image_index, image_valid, row_start)


def _take_block(probs: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """(B, R, S) row-softmaxed scores for rows row_start.. → (B, R, I) image columns, non-text rows zeroed."""
    index = layout.image_index[:, None, :].expand(-1, probs.shape[1], -1)
    block = torch.gather(probs, 2, index)
    rows = layout.text_rows[:, layout.row_start:]
    return block * rows[:, :, None] * layout.image_valid[:, None, :]


def released_block(q: torch.Tensor, k: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """q, k: (B, S, width) full-width projections (k repeated to q's width for grouped-query models)."""
    if k.shape[-1] != q.shape[-1]:
        k = k.repeat_interleave(q.shape[-1] // k.shape[-1], dim=-1)
    q, k = q.float(), k.float()
    logits = k[:, layout.row_start:] @ q.transpose(1, 2) / math.sqrt(q.shape[-1])
    logits = logits.masked_fill(~layout.valid[:, None, :], float("-inf"))
    return _take_block(torch.softmax(logits, dim=-1), layout)


def causal_attention(query: torch.Tensor, key: torch.Tensor, scaling: float, valid: torch.Tensor) -> torch.Tensor:
    """Per-head attention weights (B, H, S, S) in float32: causal, padding keys excluded, RoPE already in q/k."""
    if key.shape[1] != query.shape[1]:
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    seq = query.shape[2]
    logits = query.float() @ key.float().transpose(2, 3) * scaling
    causal = torch.ones(seq, seq, dtype=torch.bool, device=query.device).tril()
    allowed = causal[None] & valid[:, None, :]
    logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    return torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a row with no valid key (left padding) → zeros


def paper_block(weights: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """Head-averaged block of text-query rows × image-key columns from per-head weights (B, H, S, S)."""
    return _take_block(weights[:, :, layout.row_start:].mean(dim=1), layout)


@dataclass
class BlockRecorder:
    """Collects one block per (selected) layer during a forward pass; combine='sum' adds them up on the fly."""

    attention: str
    layers: list[int]
    combine: str
    layout: BatchLayout | None = None
    blocks: dict[int, torch.Tensor] = field(default_factory=dict)
    total: torch.Tensor | None = None

    def add(self, layer: int, block: torch.Tensor) -> None:
        if self.combine == "sum":
            self.total = block if self.total is None else self.total + block
        else:
            self.blocks[layer] = block

    def result(self) -> torch.Tensor:
        """(B, L', R, I): L' = 1 for combine='sum', else one block per selected layer in layer order."""
        if self.combine == "sum":
            return self.total[:, None]
        return torch.stack([self.blocks[i] for i in sorted(self.blocks)], dim=1)

    def reset(self, layout: BatchLayout) -> None:
        self.layout, self.blocks, self.total = layout, {}, None


def decoder_layers(model) -> list[torch.nn.Module]:
    """The language model's decoder layers of a transformers LLaVA model."""
    return list(model.model.language_model.layers)


def resolve_layers(spec, n_layers: int) -> list[int]:
    """'all' or a list of (possibly negative) layer indices → sorted distinct non-negative indices."""
    if spec in (None, "all"):
        return list(range(n_layers))
    out = sorted({int(i) % n_layers for i in spec})
    if any(not -n_layers <= int(i) < n_layers for i in spec):
        raise ValueError(f"layers {spec} out of range for a model with {n_layers} layers")
    return out


@contextmanager
def record_blocks(model, attention: str, layers, combine: str) -> Iterator[BlockRecorder]:
    """Install the capture (hooks or attention interface) for the duration of the block."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if combine not in ("sum", "concat"):
        raise ValueError(f"combine must be sum or concat, got {combine!r}")
    modules = decoder_layers(model)
    recorder = BlockRecorder(attention, resolve_layers(layers, len(modules)), combine)
    if attention == "released":
        with _projection_hooks(modules, recorder):
            yield recorder
    else:
        with _attention_capture(model, modules, recorder):
            yield recorder


@contextmanager
def _projection_hooks(modules, recorder: BlockRecorder):
    handles, cache = [], {}
    for index in recorder.layers:
        attn = modules[index].self_attn

        def keep_q(_module, _inputs, output, index=index):
            cache[index] = output

        def on_k(_module, _inputs, output, index=index):
            recorder.add(index, released_block(cache.pop(index), output, recorder.layout))

        handles += [attn.q_proj.register_forward_hook(keep_q), attn.k_proj.register_forward_hook(on_k)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _attention_capture(model, modules, recorder: BlockRecorder):
    """Selected layers compute their attention here, once: the weights give the block and, multiplied by the
    values, the layer's output (so the attention is not computed twice); other layers keep the model's own
    implementation."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = model.model.language_model.config
    original = config._attn_implementation or "sdpa"
    if original not in ALL_MASK_ATTENTION_FUNCTIONS:
        raise ValueError(f"attention capture needs an sdpa- or eager-style model, not {original!r}")
    if original == "eager":
        from transformers.models.llama.modeling_llama import eager_attention_forward as inner
    else:
        inner = ALL_ATTENTION_FUNCTIONS[original]
    selected = set(recorder.layers)

    def capture(module, query, key, value, attention_mask, scaling=None, **kwargs):
        if module.layer_idx not in selected:
            return inner(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
        weights = causal_attention(query, key, scaling, recorder.layout.valid)
        recorder.add(module.layer_idx, paper_block(weights, recorder.layout))
        if value.shape[1] != query.shape[1]:
            value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
        output = (weights.to(value.dtype) @ value).transpose(1, 2).contiguous()
        return output, None

    AttentionInterface.register(CAPTURE_IMPLEMENTATION, capture)
    AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS[original])
    config._attn_implementation = CAPTURE_IMPLEMENTATION
    try:
        yield
    finally:
        config._attn_implementation = original


RANDOMIZED_SVD_SEED = 42  # the release seeds torch once, with 42, before its pass


@contextmanager
def randomized_svd_pass(svd: str, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch once for a whole pass, as the release does, so that svd='randomized' draws one random stream
    over the pass's batches (the numbers depend on the batches' order, as the release's on its process count);
    the caller's RNG state is restored afterwards. Does nothing for svd='exact'."""
    if svd != "randomized":
        yield
        return
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(RANDOMIZED_SVD_SEED)
        yield


def top_singular_values(blocks: torch.Tensor, k: int, svd: str = "exact", niter: int = 2) -> torch.Tensor:
    """(..., m, n) → (..., k) largest singular values, descending (zeros where the rank is below k).

    svd='exact': torch.linalg.svdvals; 'randomized': torch.svd_lowrank(blocks, q=k) (Halko et al.) as the release
    calls it, no oversampling, drawing from torch's RNG (seed it once per pass: randomized_svd_pass).
    """
    blocks = blocks.float()
    if svd == "exact":
        values = torch.linalg.svdvals(blocks)
    elif svd == "randomized":
        values = torch.svd_lowrank(blocks, q=min(k, *blocks.shape[-2:]), niter=niter)[1]
    else:
        raise ValueError(f"svd must be exact or randomized, got {svd!r}")
    if values.shape[-1] < k:
        values = torch.nn.functional.pad(values, (0, k - values.shape[-1]))
    return values[..., :k]
