"""CLIP for the clip_score baseline, loaded from a pretrained checkpoint: openai/clip-vit-large-patch14-336 at
paper scale (a Hub id read from the local cache, or a local path), the tiny CLIP the embedded parts ship
(selectbench.embedded.clip trains it)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

from selectbench import registry
from selectbench.models.conversation import IMAGE_PLACEHOLDER
from selectbench.models.locate import locate
from selectbench.models.padding import pad_right

def record_text(record: dict) -> str:
    """The text CLIP scores for a record: every turn, in order, without the image placeholder."""
    return " ".join(t["value"].replace(IMAGE_PLACEHOLDER, "").strip() for t in record["conversations"])


def encode_texts(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenised, truncated to CLIP's context and ended by EOS (CLIP pools the text at its EOS token)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][:max_length - 1] + [tokenizer.eos_token_id]
           for t in texts]
    input_ids, mask = pad_right(ids, tokenizer.pad_token_id)
    return {"input_ids": input_ids, "attention_mask": mask}


def load_clip(source: str | Path):
    """CLIPModel, tokenizer and image processor from a local folder or a Hub id already in the local cache
    (local_files_only: nothing is downloaded)."""
    source = locate(str(source))
    model = CLIPModel.from_pretrained(source, local_files_only=True).eval()
    return (model, AutoTokenizer.from_pretrained(source, local_files_only=True),
            CLIPImageProcessor.from_pretrained(source, local_files_only=True))


def clip_pointer(data, tokenizer_dir: Path | None, cfg: dict, model_dir: Path, threads: int) -> dict:
    """The clip_model pointer, from the CLIP builder the config names (selectbench.registry)."""
    build = registry.load("clip_builder", cfg.get("builder"), "clip.builder")
    return build(data, tokenizer_dir, cfg, Path(model_dir), threads)


def pretrained_clip(data, tokenizer_dir: Path | None, cfg: dict, model_dir: Path, threads: int) -> dict:
    """A pretrained CLIP named by clip.pretrained (checked to load here, so a bad name fails this job)."""
    source = cfg.get("pretrained")
    if not source:
        raise ValueError("clip.pretrained: name a CLIP checkpoint (or set clip.builder to a builder that trains one)")
    try:
        load_clip(source)
    except (OSError, ValueError) as err:
        raise OSError(f"clip.pretrained {source!r} could not be loaded (a local folder, a Hub id already in the local "
                      f"cache, or pkg://<package>/<path>): {err}") from err
    return {"source": source, "trained_here": False}
