"""Tiny LLaVA models from configuration, with transformers' own LLaVA, CLIP and Llama classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
)

from selectbench.models.conversation import IMAGE_PLACEHOLDER


def image_seq_length(vision: dict[str, Any]) -> int:
    """Image tokens per image with the "default" feature strategy (CLS dropped)."""
    return (vision["image_size"] // vision["patch_size"]) ** 2


def build_llava(arch: dict[str, Any], tokenizer, seed: int) -> LlavaForConditionalGeneration:
    """A randomly initialised LlavaForConditionalGeneration from an architecture block of the config."""
    vision, text = arch["vision"], arch["text"]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            image_size=vision["image_size"], patch_size=vision["patch_size"], hidden_size=vision["hidden_size"],
            intermediate_size=vision["intermediate_size"], num_hidden_layers=vision["layers"],
            num_attention_heads=vision["heads"], num_channels=3),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=text["hidden_size"], intermediate_size=text["intermediate_size"],
            num_hidden_layers=text["layers"], num_attention_heads=text["heads"],
            num_key_value_heads=text["heads"], max_position_embeddings=text["max_position_embeddings"],
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=text.get("tie_word_embeddings", False)),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        image_seq_length=image_seq_length(vision),
        vision_feature_layer=arch.get("vision_feature_layer", -2),
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration._from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def image_processor_for(vision: dict[str, Any]) -> CLIPImageProcessor:
    size = vision["image_size"]
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def load_model(model_dir: Path, threads: int | None = None):
    """Model, tokenizer and image processor saved by save_model."""
    if threads:
        torch.set_num_threads(threads)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = CLIPImageProcessor.from_pretrained(model_dir)
    return model, tokenizer, processor


def load_checkpoint(checkpoint_dir: Path, with_processors: bool = True):
    """A Trainer checkpoint (run/checkpoints/checkpoint-N: weights and config only). With processors, also the
    tokenizer and image processor, read from the checkpoint if saved there, else from the run's published
    model (run/model)."""
    model = LlavaForConditionalGeneration.from_pretrained(Path(checkpoint_dir), dtype=torch.float32)
    return (model, *load_processors(checkpoint_dir)) if with_processors else model


def load_processors(checkpoint_dir: Path):
    """Tokenizer and image processor of a checkpoint: saved in it, or in its run's published model (run/model)."""
    checkpoint_dir = Path(checkpoint_dir)
    source = checkpoint_dir
    if not (checkpoint_dir / "tokenizer_config.json").exists():
        source = checkpoint_dir.parent.parent / "model"
    if not (source / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"{checkpoint_dir}: no tokenizer in the checkpoint nor in {source}")
    return AutoTokenizer.from_pretrained(source), CLIPImageProcessor.from_pretrained(source)


def save_model(model, tokenizer, image_processor, out_dir: Path) -> None:
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    image_processor.save_pretrained(out_dir)
