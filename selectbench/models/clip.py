"""CLIP for the clip_score baseline: a pretrained one at paper scale (openai/clip-vit-large-patch14-336, by Hub id
or local path, never downloaded in tests), or, in the embedded default, a tiny transformers CLIPModel trained
contrastively once on the dataset's image–caption pairs (captions.json: the stage-1 data, disjoint from the
pool) with the dataset's tokenizer."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

from selectbench.data.images import ImageLoader
from selectbench.data.prepare import DataDir
from selectbench.models.build import image_processor_for
from selectbench.models.conversation import IMAGE_PLACEHOLDER
from selectbench.models.padding import pad_right

log = logging.getLogger(__name__)


def record_text(record: dict) -> str:
    """The text CLIP scores for a record: every turn, in order, without the image placeholder."""
    return " ".join(t["value"].replace(IMAGE_PLACEHOLDER, "").strip() for t in record["conversations"])


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


def encode_texts(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenised, truncated to CLIP's context and ended by EOS (CLIP pools the text at its EOS token)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_length - 1] + [tokenizer.eos_token_id]
           for t in texts]
    input_ids, mask = pad_right(ids, tokenizer.pad_token_id)
    return {"input_ids": input_ids, "attention_mask": mask}


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
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / "train_summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("clip trained: %s", json.dumps(summary))
    return summary


def load_clip(source: str | Path):
    """CLIPModel, tokenizer and image processor from a local folder or a Hub id already in the local cache
    (local_files_only: nothing is downloaded)."""
    model = CLIPModel.from_pretrained(source, local_files_only=True).eval()
    return (model, AutoTokenizer.from_pretrained(source, local_files_only=True),
            CLIPImageProcessor.from_pretrained(source, local_files_only=True))
