"""Pretraining of a from-scratch CLIP vision tower on labelled images (embedded default only).

LLaVA starts from a pretrained CLIP; no CLIP weights ship inside any offline package, so the embedded
default pretrains its tiny tower the cheapest honest way: a linear head on every patch token classifies
that grid cell (empty or digit 0-9). The head is thrown away; the tower is then frozen, as in LLaVA.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from selectbench.data.images import ImageLoader

log = logging.getLogger(__name__)
N_CLASSES = 11  # empty + ten digits


def patch_features(tower, pixel_values: torch.Tensor, feature_layer: int) -> torch.Tensor:
    hidden = tower(pixel_values, output_hidden_states=True).hidden_states[feature_layer]
    return hidden[:, 1:]  # CLS dropped, as LLaVA's "default" feature strategy does


def labelled_cells(images: ImageLoader, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Pixels of the labelled images, each cell's class (0 = empty, then digits 0–9), and how many of the last
    items are held out (10%)."""
    pixels = torch.cat([images.pixel_values([images.load(it["image"]) for it in items[k:k + 256]])
                        for k in range(0, len(items), 256)])
    classes = torch.tensor([[c + 1 for c in it["cells"]] for it in items])
    return pixels, classes, max(1, len(items) // 10)


def pretrain_vision_tower(tower: nn.Module, images: ImageLoader, items: list[dict], cfg: dict[str, Any],
                          feature_layer: int, seed: int) -> dict:
    """Train tower + a throw-away linear head; returns accuracy on the last 10% of items (held out)."""
    torch.manual_seed(seed)
    pixels, labels, n_val = labelled_cells(images, items)
    train_x, train_y, val_x, val_y = pixels[:-n_val], labels[:-n_val], pixels[-n_val:], labels[-n_val:]
    head = nn.Linear(tower.config.hidden_size, N_CLASSES)
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["lr"])
    rng = np.random.default_rng(seed)
    tower.train()
    for _ in tqdm(range(cfg["epochs"]), desc="vision pretrain", mininterval=5):
        for batch in np.array_split(rng.permutation(len(train_x)), max(1, len(train_x) // cfg["batch_size"])):
            logits = head(patch_features(tower, train_x[batch], feature_layer))
            loss = nn.functional.cross_entropy(logits.reshape(-1, N_CLASSES), train_y[batch].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    tower.eval()
    with torch.no_grad():
        pred = head(patch_features(tower, val_x, feature_layer)).argmax(-1)
    accuracy = float((pred == val_y).float().mean())
    log.info("vision tower pretrained: held-out cell accuracy %.3f", accuracy)
    return {"vision_pretrain_cell_accuracy": accuracy, "vision_pretrain_loss": float(loss.detach())}
