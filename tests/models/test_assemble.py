"""LLaVA assembled from pretrained parts: tiny random stand-ins saved in the real checkpoints' formats (see
conftest.py) → the assembled model carries exactly their weights, the special tokens, LLaVA's vicuna_v1 prompt
and label mask, and a processor + chat template that rebuild the same ids."""

import json

import pytest
import torch
from PIL import Image

from selectbench.models.assemble import PROJECTOR_KEYS, assemble_llava
from selectbench.models.build import load_checkpoint, load_model, save_model
from selectbench.models.conversation import IGNORE_INDEX, VicunaV1
from selectbench.training.stages import train_base
from tests.models.conftest import multi_turn, pretrained_cfg

CONV = multi_turn("No.")


@pytest.fixture(scope="module")
def vicuna_llava(vicuna_dir, clip_dir, projector_file):
    return assemble_llava(pretrained_cfg(vicuna_dir, clip_dir, projector_file))


@pytest.fixture(scope="module")
def stablelm_llava(stablelm_dir, clip_dir):
    return assemble_llava(pretrained_cfg(stablelm_dir, clip_dir, None))


def _vicuna_state(vicuna_dir) -> dict:
    state = {}
    for shard in sorted(vicuna_dir.glob("pytorch_model-*-of-*.bin")):
        state.update(torch.load(shard, weights_only=True))
    return state


def test_assembled_model_carries_exactly_the_checkpoint_weights(vicuna_llava, vicuna_dir, clip_dir, projector_file):
    model, tokenizer, _ = vicuna_llava
    state = model.state_dict()
    projector = torch.load(projector_file, weights_only=True)
    for key, name in PROJECTOR_KEYS.items():
        assert torch.equal(state[f"model.multi_modal_projector.{name}"], projector[key])
    lm = _vicuna_state(vicuna_dir)
    n = lm["model.embed_tokens.weight"].shape[0]
    expected_lm = {("model.language_model." + k[len("model."):]) if k.startswith("model.") else k: v
                   for k, v in lm.items()}
    assert {k for k in state if k.startswith(("model.language_model.", "lm_head."))} == set(expected_lm)
    for key, value in expected_lm.items():
        assert torch.equal(state[key][:n] if key.endswith(("embed_tokens.weight", "lm_head.weight")) else state[key],
                           value), key
    clip = torch.load(clip_dir / "pytorch_model.bin", weights_only=True)
    expected_vision = {"model.vision_tower." + k[len("vision_model."):]: v for k, v in clip.items()
                       if k.startswith("vision_model.")}
    assert {k for k in state if k.startswith("model.vision_tower.")} == set(expected_vision)
    assert all(torch.equal(state[k], v) for k, v in expected_vision.items())


def test_image_and_pad_tokens_are_added_with_embeddings_near_the_mean(vicuna_llava, vicuna_dir):
    model, tokenizer, processor = vicuna_llava
    n = _vicuna_state(vicuna_dir)["model.embed_tokens.weight"].shape[0]
    image_id, pad_id = tokenizer.convert_tokens_to_ids("<image>"), tokenizer.convert_tokens_to_ids("<pad>")
    assert (image_id, pad_id) == (n, n + 1) and len(tokenizer) == n + 2
    assert {"<image>", "<pad>"} <= set(tokenizer.all_special_tokens)
    assert tokenizer.pad_token == "<pad>" and tokenizer.image_token == "<image>"
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2)
    assert model.config.image_token_index == image_id
    assert model.config.text_config.pad_token_id == pad_id == model.generation_config.pad_token_id
    assert model.config.text_config.vocab_size == n + 2
    assert model.config.image_seq_length == (28 // 14) ** 2
    assert model.config.vision_feature_layer == -2 and model.config.vision_feature_select_strategy == "default"
    for weight in (model.get_input_embeddings().weight, model.lm_head.weight):
        assert weight.shape[0] == n + 2
        old, new = weight[:n].detach(), weight[n:].detach()
        typical = old.norm(dim=1).mean()
        assert torch.isfinite(new).all() and ((new - old.mean(0)).norm(dim=1) < 0.05 * typical).all()
    assert processor.do_pad and processor.crop_size["height"] == 28


def test_label_mask_follows_llava_vicuna_v1(vicuna_llava):
    """Only the assistant answers (with the space before them) and their closing </s> are supervised."""
    model, tokenizer, _ = vicuna_llava
    template = VicunaV1(tokenizer, model.config.image_seq_length, system="A chat.")
    enc = template.encode(CONV)
    expected = [("<s>", 0), ("▁A", 0), ("▁chat", 0), (".", 0), ("▁USER:", 0), ("▁", 0)] + [("<image>", 0)] * 4 + [
        ("<0x0A>", 0), ("What", 0), ("▁digit", 0), ("▁is", 0), ("▁at", 0), ("▁the", 0), ("▁top?", 0),
        ("▁ASSISTANT:", 0), ("▁7", 1), ("</s>", 1),
        ("USER", 0), (":", 0), ("▁Is", 0), ("▁there", 0), ("▁a", 0), ("▁3", 0), ("▁in", 0), ("▁the", 0),
        ("▁image?", 0), ("▁ASSISTANT:", 0), ("▁No.", 1), ("</s>", 1)]
    assert tokenizer.convert_ids_to_tokens(enc.input_ids) == [t for t, _ in expected]
    assert enc.labels == [i if s else IGNORE_INDEX for i, (_, s) in zip(enc.input_ids, expected)]
    assert enc.has_image and not enc.truncated
    # log-likelihood scoring: prompt + continuation tokenise as the conversation does ("▁7", not "▁", "▁7")
    prompt = template.prompt("What digit is at the top?", with_image=True)
    assert prompt + template.continuation("7") == template.encode(CONV[:2]).input_ids


def test_forward_pass_places_the_image_tokens(vicuna_llava):
    model, tokenizer, processor = vicuna_llava
    template = VicunaV1(tokenizer, model.config.image_seq_length)
    enc = template.encode(CONV)
    pixels = processor(images=[Image.new("RGB", (28, 28), (200, 10, 10))], return_tensors="pt")["pixel_values"]
    out = model(input_ids=torch.tensor([enc.input_ids]), pixel_values=pixels, labels=torch.tensor([enc.labels]))
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError):  # one image token too few cannot be placed
        ids = [t for t in enc.input_ids]
        ids.remove(model.config.image_token_index)
        model(input_ids=torch.tensor([ids]), pixel_values=pixels)


@pytest.mark.parametrize("which", ["vicuna", "stablelm"])
def test_saved_chat_template_rebuilds_the_vicuna_v1_ids(tmp_path, request, which):
    from transformers import AutoProcessor

    model, tokenizer, processor = request.getfixturevalue(f"{which}_llava")
    template = VicunaV1(tokenizer, model.config.image_seq_length, system="A chat.")
    save_model(model, tokenizer, processor, tmp_path, template.chat_template())
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert (loaded.patch_size, loaded.num_additional_image_tokens) == (14, 1)
    image = Image.new("RGB", (40, 20), (10, 200, 10))  # not square: the processor pads it as LLaVA does
    question = [{"role": "user", "content": "<image>\nWhat digit is at the top?"}]
    text = loaded.tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    bos = "" if which == "vicuna" else tokenizer.bos_token  # Llama's tokenizer adds <s> itself
    assert text == bos + "A chat. USER: <image>\nWhat digit is at the top? ASSISTANT:"
    inputs = loaded(text=text, images=[image], return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == template.prompt("What digit is at the top?", with_image=True)
    assert inputs["pixel_values"].shape[-2:] == (28, 28)
    # the whole multi-turn conversation, with list contents and a trailing <image> moved to the front
    messages = [{"role": "user", "content": [{"type": "text", "text": "What digit is at the top?"},
                                             {"type": "image"}]},
                {"role": "assistant", "content": "7"},
                {"role": "user", "content": "Is there a 3 in the image?"},
                {"role": "assistant", "content": "No."}]
    text = loaded.apply_chat_template(messages, tokenize=False)
    assert loaded(text=text, images=[image])["input_ids"][0] == template.encode(CONV).input_ids
    trailing = [{"role": "user", "content": "What digit is at the top?\n<image>"}]
    assert loaded.tokenizer.apply_chat_template(trailing, tokenize=False, add_generation_prompt=True) == \
        bos + "A chat. USER: <image>\nWhat digit is at the top? ASSISTANT:"


def test_stablelm_proxy_assembles_with_a_fresh_projector(stablelm_llava, stablelm_dir, clip_dir):
    from transformers import AutoTokenizer

    model, tokenizer, _ = stablelm_llava
    original = AutoTokenizer.from_pretrained(stablelm_dir)
    assert original.pad_token == original.eos_token  # StableLM pads with its eos: a distinct <pad> is added
    assert tokenizer.pad_token == "<pad>" and len(tokenizer) == len(original) + 2
    assert type(model.model.language_model).__name__ == "StableLmModel"
    assert model.config.image_token_index == tokenizer.convert_tokens_to_ids("<image>")
    again, _, _ = assemble_llava(pretrained_cfg(stablelm_dir, clip_dir, None))  # seeded: the same fresh start
    assert all(torch.equal(a, b) for a, b in zip(model.model.multi_modal_projector.state_dict().values(),
                                                  again.model.multi_modal_projector.state_dict().values()))
    template = VicunaV1(tokenizer, model.config.image_seq_length)
    enc = template.encode(CONV)
    out = model(input_ids=torch.tensor([enc.input_ids]), labels=torch.tensor([enc.labels]),
                pixel_values=torch.zeros(1, 3, 28, 28))
    assert torch.isfinite(out.loss)


def test_save_and_load_round_trip_in_bfloat16(tmp_path, vicuna_dir, clip_dir, projector_file):
    model, tokenizer, processor = assemble_llava(pretrained_cfg(vicuna_dir, clip_dir, projector_file,
                                                                dtype="bfloat16"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    save_model(model, tokenizer, processor, tmp_path, VicunaV1(tokenizer, 4).chat_template())
    for loaded, tok, proc in (load_model(tmp_path), load_checkpoint(tmp_path)):
        assert {p.dtype for p in loaded.parameters()} == {torch.float32}  # CPU loads upcast
        before, after = model.state_dict(), loaded.state_dict()
        assert set(before) == set(after) and all(torch.equal(before[k].float(), after[k]) for k in before)
        assert tok.convert_tokens_to_ids(["<image>", "<pad>"]) == tokenizer.convert_tokens_to_ids(["<image>", "<pad>"])
        assert proc.do_pad and loaded.config.image_seq_length == 4
    assert load_model(tmp_path, dtype=torch.bfloat16)[0].dtype == torch.bfloat16


def test_projector_file_errors_name_the_file(tmp_path, vicuna_dir, clip_dir, projector_file):
    good = torch.load(projector_file, weights_only=True)
    cases = {
        "renamed.bin": {k.replace("model.mm_projector", "mm_projector"): v for k, v in good.items()},
        "extra.bin": {**good, "model.mm_projector.4.weight": good["model.mm_projector.2.weight"]},
        "shape.bin": {**good, "model.mm_projector.0.weight": torch.zeros(32, 17)},
    }
    for name, state in cases.items():
        torch.save(state, tmp_path / name)
        with pytest.raises(ValueError, match=name):
            assemble_llava(pretrained_cfg(vicuna_dir, clip_dir, tmp_path / name))
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        assemble_llava(pretrained_cfg(vicuna_dir, clip_dir, tmp_path / "missing.bin"))
    with pytest.raises(OSError, match="pretrained.language_model"):
        assemble_llava(pretrained_cfg(tmp_path / "no-such-model", clip_dir, None))


def test_train_base_assembles_and_runs_stage1_only_if_configured(tmp_path, tiny_data, vicuna_dir, stablelm_dir,
                                                                  clip_dir, projector_file):
    template = {"system": "A chat.", "max_length": 256}
    target = {"pretrained": pretrained_cfg(vicuna_dir, clip_dir, projector_file), "template": template}
    summary = train_base(tiny_data, None, target, 0, tmp_path / "target", 1)
    assert summary["train_loss"] is None and "not run" in summary["stage1"]
    assert json.loads((tmp_path / "target" / "train_summary.json").read_text())["vocab_size"] == summary["vocab_size"]
    saved, _, _ = load_model(tmp_path / "target" / "model")
    projector = torch.load(projector_file, weights_only=True)
    assert torch.equal(saved.model.multi_modal_projector.linear_1.weight, projector["model.mm_projector.0.weight"])

    stage1 = {"trainable": ["projector"], "epochs": 1, "batch_size": 16, "lr": 1e-2}
    proxy = {"pretrained": pretrained_cfg(stablelm_dir, clip_dir, None), "template": template, "stage1": stage1}
    summary = train_base(tiny_data, None, proxy, 0, tmp_path / "proxy", 1)
    assert summary["examples"] == len(tiny_data.captions()) and summary["train_loss"] > 0
    start, _, _ = assemble_llava(proxy["pretrained"], 0)
    trained, _, _ = load_model(tmp_path / "proxy" / "model")
    before, after = start.state_dict(), trained.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.multi_modal_projector.") for k in changed)


def test_projector_named_by_hub_repo_and_file_is_read_from_the_cache(monkeypatch, projector_file):
    import huggingface_hub

    from selectbench.models.assemble import projector_path

    calls = []

    def cached(repo_id, filename, local_files_only):
        calls.append((repo_id, filename, local_files_only))
        return str(projector_file)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached)
    name = "liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5/mm_projector.bin"
    assert projector_path(name) == projector_file
    assert calls == [("liuhaotian/llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5", "mm_projector.bin", True)]
    assert projector_path(str(projector_file)) == projector_file and len(calls) == 1  # a local file is used as is

    def offline(*args, **kwargs):
        raise FileNotFoundError("not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(FileNotFoundError, match="pretrained.projector .*liuhaotian"):
        projector_path(name)
