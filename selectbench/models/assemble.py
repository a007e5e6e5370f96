"""LLaVA from pretrained parts with transformers' own classes.

A `pretrained:` block names either a whole LLaVA checkpoint saved by this suite or by transformers (`llava:`, as
the embedded default names its shipped parts), or a causal language model (a Hub id read from the local cache, or a local folder;
optionally a GGUF file in it), a CLIP vision tower (a CLIPModel or CLIPVisionModel checkpoint) and LLaVA's
stage-1 projector file (mm_projector.bin; null = a fresh projector that stage 1 trains):

    pretrained:
      language_model: lmsys/vicuna-7b-v1.5
      vision_tower: openai/clip-vit-large-patch14-336
      projector: /path/mm_projector.bin
      vision_feature_layer: -2
      dtype: bfloat16
      local_files_only: true

Every name is a Hub id, a local path or a package resource (selectbench.models.locate). The loaded modules are moved into a LlavaForConditionalGeneration skeleton built on the meta device, so a 7B
language model is never initialised at random nor held twice. <image> and <pad> are added to the tokenizer;
the new embedding rows are drawn around the mean of the old ones (transformers' mean_resizing, as the llava-hf
conversion did).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig, AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, LlavaConfig,
    LlavaForConditionalGeneration,
)
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from selectbench.models.build import image_seq_length, load_model
from selectbench.models.conversation import IMAGE_PLACEHOLDER
from selectbench.models.locate import locate

log = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
# LLaVA's mlp2x_gelu projector is nn.Sequential(Linear, GELU, Linear) saved under model.mm_projector.{0,2}.*
PROJECTOR_KEYS = {
    "model.mm_projector.0.weight": "linear_1.weight",
    "model.mm_projector.0.bias": "linear_1.bias",
    "model.mm_projector.2.weight": "linear_2.weight",
    "model.mm_projector.2.bias": "linear_2.bias",
}


def torch_dtype(name: str | None) -> torch.dtype:
    """torch dtype from its config name (bfloat16, float16, float32); None = float32."""
    dtype = getattr(torch, name or "float32", None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"pretrained.dtype: unknown dtype {name!r} (bfloat16, float16 or float32)")
    return dtype


def _from_pretrained(what: str, source: str, load, **kwargs):
    """Call a from_pretrained, naming the config key and the source when it fails (offline: not in the cache)."""
    try:
        return load(locate(source), **kwargs)
    except (OSError, ValueError) as err:
        offline = " (local_files_only: it must be in the local Hugging Face cache or be a folder)" \
            if kwargs.get("local_files_only") else ""
        kind = OSError if isinstance(err, OSError) else ValueError
        raise kind(f"pretrained.{what} {source!r} could not be loaded{offline}: {err}") from err


def load_language_model(cfg: dict[str, Any]):
    """The causal LM and its tokenizer, with <image> (and <pad> where the LM has none) added to the tokenizer
    only; the embeddings are resized by assemble_llava."""
    source, gguf = str(cfg["language_model"]), cfg.get("language_model_gguf")
    common = {"local_files_only": cfg.get("local_files_only", True)}
    if gguf:
        common["gguf_file"] = gguf
    tokenizer = _from_pretrained("language_model", source, AutoTokenizer.from_pretrained,
                                 extra_special_tokens={"image_token": IMAGE_PLACEHOLDER}, **common)
    model = _from_pretrained("language_model", source, AutoModelForCausalLM.from_pretrained,
                             dtype=torch_dtype(cfg.get("dtype")), **common)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.padding_side = "right"
    if tokenizer.eos_token_id is None:
        raise ValueError(f"pretrained.language_model {source!r}: the tokenizer has no eos token")
    return model, tokenizer


def load_vision_tower(cfg: dict[str, Any]):
    """The CLIP vision tower (from a CLIPModel or CLIPVisionModel checkpoint) and its image processor."""
    source = str(cfg["vision_tower"])
    common = {"local_files_only": cfg.get("local_files_only", True)}
    config = _from_pretrained("vision_tower", source, AutoConfig.from_pretrained, **common)
    if config.model_type not in ("clip", "clip_vision_model"):
        raise ValueError(f"pretrained.vision_tower {source!r}: a CLIP checkpoint is needed, got {config.model_type}")
    tower = _from_pretrained("vision_tower", source, CLIPVisionModel.from_pretrained,
                             dtype=torch_dtype(cfg.get("dtype")), **common)
    processor = _from_pretrained("vision_tower", source, CLIPImageProcessor.from_pretrained, **common)
    return tower, processor


def llava_image_processor(clip_processor):
    """LLaVA-1.5's image processing as an image processor: CLIP's settings plus pad-to-square with the mean
    colour (image_aspect_ratio=pad), so that evaluation harnesses feeding raw images (lmms-eval's llava_hf) see
    what training saw. Our ImageLoader pads before the processor, where this padding is then a no-op."""
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    keys = ("size", "crop_size", "image_mean", "image_std", "resample", "do_resize", "do_center_crop",
            "do_rescale", "rescale_factor", "do_normalize", "do_convert_rgb")
    settings = {k: getattr(clip_processor, k) for k in keys if getattr(clip_processor, k, None) is not None}
    return LlavaImageProcessorPil(**settings, do_pad=True)


def projector_path(source: str, local_files_only: bool = True) -> Path:
    """A projector file: a local path, or "owner/repo/file" in a Hub repository (read from the local cache)."""
    path = Path(locate(source))
    if path.is_file():
        return path
    parts = str(source).split("/")
    if len(parts) >= 3 and not path.is_absolute():
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), local_files_only=local_files_only))
        except Exception as err:  # noqa: BLE001 - any download/cache error becomes one message naming the key
            raise FileNotFoundError(f"pretrained.projector {source!r}: not a file, and not found as "
                                    f"owner/repo/file in the Hugging Face cache: {err}") from err
    raise FileNotFoundError(f"pretrained.projector {source!r}: no such file")


def load_projector(path: Path, projector: torch.nn.Module) -> None:
    """Load LLaVA's stage-1 mm_projector.bin (or .safetensors) into a LlavaMultiModalProjector; any missing or
    unexpected key or shape mismatch is an error naming the file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    unexpected = sorted(set(state) - set(PROJECTOR_KEYS))
    missing = sorted(set(PROJECTOR_KEYS) - set(state))
    if unexpected or missing:
        raise ValueError(f"{path}: not a LLaVA mlp2x_gelu projector file: missing keys {missing}, "
                         f"unexpected keys {unexpected}")
    target = projector.state_dict()
    mapped = {}
    for key, name in PROJECTOR_KEYS.items():
        if tuple(state[key].shape) != tuple(target[name].shape):
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, the model's {name} needs "
                             f"{tuple(target[name].shape)} (vision hidden size → language hidden size)")
        mapped[name] = state[key].to(target[name].dtype)
    projector.load_state_dict(mapped, strict=True)


def describe(cfg: dict[str, Any]) -> dict[str, Any]:
    """The parts a `pretrained:` block names, for a run's summary."""
    keys = ("llava", "language_model", "language_model_gguf", "vision_tower", "projector", "vision_feature_layer",
            "dtype")
    return {key: cfg[key] for key in keys if key in cfg}


def load_llava(cfg: dict[str, Any]):
    """A whole saved LLaVA (`pretrained.llava`): model, tokenizer and image processor, in the block's dtype."""
    source = str(cfg["llava"])
    extra = sorted(set(cfg) & {"language_model", "language_model_gguf", "vision_tower", "projector"})
    if extra:
        raise ValueError(f"pretrained.llava {source!r} is a whole model: drop {extra} from the block")
    try:
        return load_model(Path(locate(source)), dtype=torch_dtype(cfg.get("dtype")))
    except (OSError, ValueError) as err:
        raise type(err)(f"pretrained.llava {source!r} could not be loaded: {err}") from err


def assemble_llava(cfg: dict[str, Any], seed: int = 0):
    """LlavaForConditionalGeneration from a `pretrained:` block: (model, tokenizer, image processor)."""
    if "llava" in cfg:
        return load_llava(cfg)
    lm, tokenizer = load_language_model(cfg)
    tower, clip_processor = load_vision_tower(cfg)
    dtype = torch_dtype(cfg.get("dtype"))
    config = LlavaConfig(
        vision_config=tower.config, text_config=lm.config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        image_seq_length=image_seq_length(tower.config.to_dict()),
        vision_feature_layer=cfg.get("vision_feature_layer", -2),
        vision_feature_select_strategy="default", projector_hidden_act="gelu",
        tie_word_embeddings=lm.config.tie_word_embeddings,
    )
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = tower
    model.model.language_model = lm.base_model
    model.lm_head = lm.get_output_embeddings()
    torch.manual_seed(seed)  # a fresh projector: nn.Linear's default initialisation, as LLaVA builds it
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
    if cfg.get("projector"):
        load_projector(projector_path(cfg["projector"], cfg.get("local_files_only", True)),
                       model.model.multi_modal_projector)
    on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if on_meta:
        raise RuntimeError(f"assembling LLaVA left tensors uninitialised: {on_meta[:5]}")
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    text = model.config.get_text_config()
    text.pad_token_id = tokenizer.pad_token_id
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    log.info("assembled LLaVA: %s + %s, projector %s, vocabulary %d, %d image tokens per image",
             cfg["language_model"], cfg["vision_tower"], cfg.get("projector") or "fresh", len(tokenizer),
             config.image_seq_length)
    return model, tokenizer, llava_image_processor(clip_processor)
