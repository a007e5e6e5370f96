"""Projector alignment for the embedded default: image tokens that read as the text scenes of stage 0.

LLaVA's projector maps CLIP features into the input space of a language model that already understands text.
The tiny language model learns its text skills on scenes spelled "4-85--3--" (selectbench.data.language); this
step fits the projector, by regression on the labelled cells of the caption images, so that the image token of
each cell is the language model's input embedding of that cell's character (the digit, or "-" when empty).
Presence learned on text then carries over to images (82% zero-shot on pool images right after alignment, against
38–59% for every way tried of learning it from the images themselves); stage 1 then trains projector and language
model on the captions from this start.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from selectbench.data.images import ImageLoader
from selectbench.data.language import EMPTY_CELL
from selectbench.models.vision_pretrain import labelled_cells, patch_features

log = logging.getLogger(__name__)


def cell_token_ids(tokenizer) -> list[int]:
    """Token id of each cell class (0 = empty, then digits 0–9), as a text scene is tokenised."""
    chars = EMPTY_CELL + "0123456789"
    ids = tokenizer(chars, add_special_tokens=False)["input_ids"]
    if len(ids) != len(chars):
        raise ValueError(f"the tokenizer does not spell {chars!r} one token per character ({len(ids)} tokens): "
                         "projector alignment needs a token per cell class")
    return ids


def align_projector(model, tokenizer, images: ImageLoader, labelled: list[dict], cfg: dict[str, Any],
                    seed: int) -> dict:
    """Fit model's projector (vision tower frozen) so each cell's image token equals its character's input
    embedding; returns the held-out (last 10% of images) nearest-character accuracy and the final loss."""
    torch.manual_seed(seed)
    embeddings = model.get_input_embeddings().weight.detach()[cell_token_ids(tokenizer)]
    pixels, classes, n_val = labelled_cells(images, labelled)
    tower = model.model.vision_tower.eval()
    with torch.no_grad():
        features = torch.cat([patch_features(tower, pixels[k:k + 256], model.config.vision_feature_layer)
                              for k in range(0, len(pixels), 256)])
    projector = model.model.multi_modal_projector
    projector.requires_grad_(True)  # an earlier stage may have trained the language model alone
    opt = torch.optim.Adam(projector.parameters(), lr=cfg["lr"])
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg["steps"]):
        batch = torch.randint(0, len(labelled) - n_val, (cfg["batch_size"],), generator=generator)
        loss = torch.nn.functional.mse_loss(projector(features[batch]), embeddings[classes[batch]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        tokens = projector(features[-n_val:]).reshape(-1, embeddings.shape[-1])
        nearest = torch.cdist(tokens, embeddings).argmin(-1)
    accuracy = float((nearest == classes[-n_val:].reshape(-1)).float().mean())
    log.info("projector aligned: held-out nearest-character accuracy %.3f (loss %.2e)", accuracy, float(loss.detach()))
    return {"projector_align_accuracy": accuracy, "projector_align_loss": float(loss.detach())}
