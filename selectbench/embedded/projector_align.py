"""Projector alignment for the embedded default: image tokens that read as the characters of the question.

LLaVA's projector maps CLIP features into the input space of a language model that already understands text.
The tiny language model starts from nothing, and learns membership ("Is there a 7 in the image?") only when the
image token of a 7 is what the 7 of the question is: this step fits the projector, by regression on the labelled
cells of the caption images, so that the image token of each cell is the language model's input embedding of that
cell's character (the digit, or "-" when empty), plus, with `position_scale`, a fixed vector for the cell (the
token's place among the image tokens is otherwise only known relative to the question that follows). Stage 0 then
trains the language model on the scene corpus through this projector (selectbench.embedded.scene_corpus).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from selectbench.data.images import ImageLoader
from selectbench.embedded.vision_pretrain import labelled_cells, patch_features

log = logging.getLogger(__name__)
EMPTY_CELL = "-"  # as the grid captions write an empty cell


def cell_token_ids(tokenizer) -> list[int]:
    """Token id of each cell class (0 = empty, then digits 0–9), as the question names them."""
    chars = EMPTY_CELL + "0123456789"
    ids = tokenizer(chars, add_special_tokens=False)["input_ids"]
    if len(ids) != len(chars):
        raise ValueError(f"the tokenizer does not spell {chars!r} one token per character ({len(ids)} tokens): "
                         "projector alignment needs a token per cell class")
    return ids


def cell_position_codes(cells: int, embeddings: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    """One fixed random vector per cell, `scale` times the characters' mean embedding norm (zeros at scale 0):
    added to the alignment targets so that an image token also says where its cell is (a token's place among
    the image tokens is otherwise only known relative to the question that follows)."""
    generator = torch.Generator().manual_seed(seed + 1)
    codes = torch.randn(cells, embeddings.shape[-1], generator=generator)
    return codes / codes.norm(dim=-1, keepdim=True) * embeddings.norm(dim=-1).mean() * scale


def align_projector(model, tokenizer, images: ImageLoader, labelled: list[dict], cfg: dict[str, Any],
                    seed: int) -> dict:
    """Fit model's projector (vision tower frozen) so each cell's image token equals its character's input
    embedding; returns the held-out (last 10% of images) nearest-character accuracy and the final loss."""
    torch.manual_seed(seed)
    embeddings = model.get_input_embeddings().weight.detach()[cell_token_ids(tokenizer)]
    pixels, classes, n_val = labelled_cells(images, labelled)
    codes = cell_position_codes(classes.shape[1], embeddings, cfg.get("position_scale", 0.0), seed)
    tower = model.model.vision_tower.eval()
    with torch.no_grad():
        features = torch.cat([patch_features(tower, pixels[k:k + 256], model.config.vision_feature_layer)
                              for k in range(0, len(pixels), 256)])
    projector = model.model.multi_modal_projector
    projector.requires_grad_(True)
    opt = torch.optim.Adam(projector.parameters(), lr=cfg["lr"])
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg["steps"]):
        batch = torch.randint(0, len(labelled) - n_val, (cfg["batch_size"],), generator=generator)
        loss = torch.nn.functional.mse_loss(projector(features[batch]), embeddings[classes[batch]] + codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        tokens = (projector(features[-n_val:]) - codes).reshape(-1, embeddings.shape[-1])
        nearest = torch.cdist(tokens, embeddings).argmin(-1)
    accuracy = float((nearest == classes[-n_val:].reshape(-1)).float().mean())
    log.info("projector aligned: held-out nearest-character accuracy %.3f (loss %.2e)", accuracy, float(loss.detach()))
    return {"projector_align_accuracy": accuracy, "projector_align_loss": float(loss.detach())}
