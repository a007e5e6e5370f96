"""Tiny LLaVA models from configuration, with transformers' own LLaVA, CLIP and Llama classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (
    AutoImageProcessor, AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
    LlavaForConditionalGeneration, LlavaProcessor,
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


def load_model(model_dir: Path, threads: int | None = None, dtype: torch.dtype = torch.float32):
    """Model, tokenizer and image processor saved by save_model (weights cast to dtype: float32 by default, so a
    model saved in bfloat16 is upcast for CPU work)."""
    if threads:
        torch.set_num_threads(threads)
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    return model, tokenizer, processor


def load_checkpoint(checkpoint_dir: Path, with_processors: bool = True, dtype: torch.dtype = torch.float32):
    """A Trainer checkpoint (run/checkpoints/checkpoint-N: weights and config only), weights cast to dtype. With
    processors, also the tokenizer and image processor, read from the checkpoint if saved there, else from the
    run's published model (run/model)."""
    model = LlavaForConditionalGeneration.from_pretrained(Path(checkpoint_dir), dtype=dtype)
    return (model, *load_processors(checkpoint_dir)) if with_processors else model


def load_processors(checkpoint_dir: Path):
    """Tokenizer and image processor of a checkpoint: saved in it, or in its run's published model (run/model)."""
    checkpoint_dir = Path(checkpoint_dir)
    source = checkpoint_dir
    if not (checkpoint_dir / "tokenizer_config.json").exists():
        source = checkpoint_dir.parent.parent / "model"
    if not (source / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"{checkpoint_dir}: no tokenizer in the checkpoint nor in {source}")
    return AutoTokenizer.from_pretrained(source), AutoImageProcessor.from_pretrained(source)


def num_additional_image_tokens(vision_config) -> int:
    """Vision-tower positions that are not image patches (CLIP's CLS token), for LlavaProcessor."""
    extra = {"clip_vision_model": 1, "siglip_vision_model": 0}
    if vision_config.model_type not in extra:
        raise ValueError(f"no known count of non-patch tokens for a {vision_config.model_type} vision tower")
    return extra[vision_config.model_type]


def llava_processor(model_config, tokenizer, image_processor, chat_template: str | None = None) -> LlavaProcessor:
    """transformers' LlavaProcessor for a model: text with one "<image>" per image becomes ids with exactly
    image_seq_length image tokens per image (checked), so evaluation harnesses (lmms-eval's llava_hf) can drive it."""
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template,
        patch_size=model_config.vision_config.patch_size,
        vision_feature_select_strategy=model_config.vision_feature_select_strategy,
        num_additional_image_tokens=num_additional_image_tokens(model_config.vision_config))
    side = model_config.vision_config.image_size
    ids = processor(text=processor.image_token, images=[Image.new("RGB", (side, side))])["input_ids"][0]
    if list(ids).count(model_config.image_token_index) != model_config.image_seq_length:
        raise ValueError(f"LlavaProcessor inserts {list(ids).count(model_config.image_token_index)} image tokens, "
                         f"the model expects image_seq_length {model_config.image_seq_length}")
    return processor


def save_model(model, tokenizer, image_processor, out_dir: Path, chat_template: str | None = None) -> None:
    """Weights and config, and beside them a LlavaProcessor (tokenizer, image processor, patch size, chat
    template) that AutoProcessor and lmms-eval's llava_hf load."""
    model.save_pretrained(out_dir)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    llava_processor(model.config, tokenizer, image_processor, chat_template).save_pretrained(out_dir)
