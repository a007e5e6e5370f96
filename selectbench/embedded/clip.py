"""The embedded world's tiny CLIP (for the clip_score baseline): a transformers CLIPModel trained contrastively
once on the dataset's image-caption pairs (captions.json: the stage-1 data, disjoint from the pool) with the
dataset's tokenizer. It ships in pretrained/clip; paper scale names a pretrained CLIP instead."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoTokenizer, CLIPConfig, CLIPModel

from selectbench.data.images import ImageLoader
from selectbench.data.datadir import DataDir
from selectbench.io import atomic_dir, atomic_write_text
from selectbench.models.build import image_processor_for
from selectbench.models.clip import encode_texts, record_text

log = logging.getLogger(__name__)


def build_clip(cfg: dict[str, Any], tokenizer, seed: int) -> CLIPModel:
    vision, text = cfg["vision"], cfg["text"]
    config = CLIPConfig(
        vision_config=dict(image_size=vision["image_size"], patch_size=vision["patch_size"],
                           hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
                           num_hidden_layers=vision["layers"], num_attention_heads=vision["heads"]),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=text["hidden_size"],
                         intermediate_size=text["intermediate_size"], num_hidden_layers=text["layers"],
                         num_attention_heads=text["heads"], max_position_embeddings=text["max_length"],
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        projection_dim=cfg["projection_dim"])
    torch.manual_seed(seed)
    return CLIPModel(config)


def train_clip(data: DataDir, tokenizer_dir: Path, cfg: dict[str, Any], seed: int, out_dir: Path,
               threads: int = 1) -> dict[str, Any]:
    """Contrastive (InfoNCE) training on the caption pairs; published atomically to out_dir."""
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_clip(cfg, tokenizer, seed)
    processor = image_processor_for(cfg["vision"])
    images = ImageLoader(data.image_root, processor)
    pairs = data.captions()
    pixels = torch.cat([images.pixel_values([images.load(p["image"], p["id"]) for p in pairs[k:k + 256]])
                        for k in range(0, len(pairs), 256)])
    texts = encode_texts(tokenizer, [record_text({"conversations": p["conversations"][1:]}) for p in pairs],
                         cfg["text"]["max_length"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"])
    rng = np.random.default_rng(seed)
    start, model_loss = time.time(), float("nan")
    model.train()
    for _ in tqdm(range(cfg["epochs"]), desc="clip", mininterval=5):
        for batch in np.array_split(rng.permutation(len(pairs)), max(1, len(pairs) // cfg["batch_size"])):
            out = model(input_ids=texts["input_ids"][batch], attention_mask=texts["attention_mask"][batch],
                        pixel_values=pixels[batch], return_loss=True)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            model_loss = float(out.loss.detach())
    model.eval()
    n_val = min(256, len(pairs))
    with torch.no_grad():  # retrieval accuracy on the last captions (seen in training: a sanity check only)
        logits = model(input_ids=texts["input_ids"][-n_val:], attention_mask=texts["attention_mask"][-n_val:],
                       pixel_values=pixels[-n_val:]).logits_per_image
    summary = {"pairs": len(pairs), "final_loss": model_loss, "seconds": time.time() - start,
               "image_to_text_top1": float((logits.argmax(1) == torch.arange(n_val)).float().mean())}
    with atomic_dir(Path(out_dir)) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        atomic_write_text(tmp / "train_summary.json", json.dumps(summary, indent=1))
    log.info("clip trained: %s", json.dumps(summary))
    return summary


def trained_clip(data: DataDir, tokenizer_dir: Path | None, cfg: dict[str, Any], model_dir: Path,
                 threads: int) -> dict:
    """The "digits_recipe" CLIP builder (selectbench.models.clip.CLIP_BUILDERS): trained here on the captions."""
    if tokenizer_dir is None:
        raise ValueError("clip.builder digits_recipe trains on the dataset's tokenizer (the tokenizer rule)")
    train_clip(data, tokenizer_dir, cfg, cfg.get("seed", 0), model_dir, threads)
    return {"source": str(Path(model_dir).resolve()), "trained_here": True}
