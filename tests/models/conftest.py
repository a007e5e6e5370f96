"""Tiny random stand-ins for pretrained checkpoints, saved in the formats the real ones ship in:
Vicuna-7B-v1.5 (sharded pytorch_model-0000x-of-0000y.bin + index, a Llama tokenizer with <s> added by the
tokenizer itself), openai/clip-vit-large-patch14-336 (a whole CLIPModel, text tower included, with its old-style
preprocessor_config.json), LLaVA's stage-1 mm_projector.bin, and a StableLM-2-class language model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

LM_HIDDEN, VISION_HIDDEN = 32, 16
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
TEXTS = ["A chat between a curious user and an artificial intelligence assistant. USER: What digit is at the top? "
         "ASSISTANT: 7 Is there a 3 in the image? No. Yes, there is. How many digits are there? Two."] * 20


def multi_turn(last_answer: str = "No") -> list[dict]:
    """A two-round LLaVA conversation with an image, for prompt and label-masking tests."""
    return [{"from": "human", "value": "<image>\nWhat digit is at the top?"}, {"from": "gpt", "value": "7"},
            {"from": "human", "value": "Is there a 3 in the image?"}, {"from": "gpt", "value": last_answer}]


def llama_style_tokenizer() -> Tokenizer:
    """SentencePiece-like BPE as Llama's tokenizer.json has it: <unk> <s> </s>, the 256 byte-fallback tokens,
    then the pieces; "▁" for spaces, prepended to the first word only; <s> added by the post-processor."""
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer_tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=200, show_progress=False))
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece in sorted(trained["vocab"], key=trained["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def save_sharded_bin(state: dict[str, torch.Tensor], out: Path, shards: int = 2) -> None:
    """pytorch_model-0000k-of-0000n.bin files and their index, as Vicuna-7B-v1.5 ships."""
    keys = list(state)
    per = -(-len(keys) // shards)
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
             "weight_map": {}}
    for k in range(shards):
        name = f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin"
        part = {key: state[key].clone() for key in keys[k * per:(k + 1) * per]}
        torch.save(part, out / name)
        index["weight_map"].update({key: name for key in part})
    (out / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=1))


@pytest.fixture(scope="session")
def vicuna_dir(tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("vicuna-7b-v1.5")
    tok = llama_style_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "model_max_length": 4096, "padding_side": "right", "clean_up_tokenization_spaces": False}))
    (out / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                                             "unk_token": "<unk>"}))
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=LM_HIDDEN, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         tie_word_embeddings=False)
    torch.manual_seed(1)
    model = LlamaForCausalLM(config)
    config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    save_sharded_bin(model.state_dict(), out)
    return out


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A whole CLIPModel (text and vision towers) saved as pytorch_model.bin, image 28 px, patch 14 → 4 tokens."""
    from transformers import CLIPConfig, CLIPModel

    out = tmp_path_factory.mktemp("clip-vit-large-patch14-336")
    config = CLIPConfig(
        vision_config=dict(image_size=28, patch_size=14, hidden_size=VISION_HIDDEN, intermediate_size=32,
                           num_hidden_layers=3, num_attention_heads=2),
        text_config=dict(vocab_size=99, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        projection_dim=8)
    torch.manual_seed(2)
    model = CLIPModel(config)
    config.save_pretrained(out)
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    (out / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 28, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "resample": 3, "size": 28}))
    return out


@pytest.fixture(scope="session")
def projector_file(tmp_path_factory) -> Path:
    """LLaVA's stage-1 mm_projector.bin: nn.Sequential(Linear, GELU, Linear) under model.mm_projector.*"""
    torch.manual_seed(3)
    state = {"model.mm_projector.0.weight": torch.randn(LM_HIDDEN, VISION_HIDDEN),
             "model.mm_projector.0.bias": torch.randn(LM_HIDDEN),
             "model.mm_projector.2.weight": torch.randn(LM_HIDDEN, LM_HIDDEN),
             "model.mm_projector.2.bias": torch.randn(LM_HIDDEN)}
    path = tmp_path_factory.mktemp("llava-pretrain") / "mm_projector.bin"
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def stablelm_dir(tmp_path_factory) -> Path:
    """A StableLM-2-class LM (StableLmForCausalLM, GPT-2-style byte-level tokenizer whose pad is its eos)."""
    from transformers import PreTrainedTokenizerFast, StableLmConfig, StableLmForCausalLM

    out = tmp_path_factory.mktemp("stablelm-2")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.save_pretrained(out)
    config = StableLmConfig(vocab_size=len(fast), hidden_size=LM_HIDDEN, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                            max_position_embeddings=512, bos_token_id=0, eos_token_id=0,
                            tie_word_embeddings=False)
    torch.manual_seed(4)
    StableLmForCausalLM(config).save_pretrained(out)
    return out


def pretrained_cfg(lm: Path, clip: Path, projector: Path | None, **extra) -> dict:
    return {"language_model": str(lm), "vision_tower": str(clip), "projector": str(projector) if projector else None,
            "vision_feature_layer": -2, "dtype": "float32", "local_files_only": True, **extra}
