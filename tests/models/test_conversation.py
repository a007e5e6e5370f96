"""vicuna_v1 prompt and label masking: only assistant answers and their </s> are supervised."""

import pytest

from selectbench.models.conversation import IGNORE_INDEX, VicunaV1, normalise_image_position
from selectbench.embedded.tokenizer import train_tokenizer
from tests.models.conftest import multi_turn

CONV = multi_turn()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = ["What digit is at the top? 7 Is there a 3 in the image? No USER: ASSISTANT: A chat."] * 5
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))


def test_prompt_text_and_labels(tokenizer):
    tmpl = VicunaV1(tokenizer, image_seq_length=9, system="A chat.")
    enc = tmpl.encode(CONV)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert enc.input_ids.count(image_id) == 9
    text = tokenizer.decode([t for t in enc.input_ids if t != image_id])
    assert text == "<s>A chat. USER: \nWhat digit is at the top? ASSISTANT: 7</s>USER: Is there a 3 in the image? ASSISTANT: No</s>"
    supervised = [t for t, label in zip(enc.input_ids, enc.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == " 7</s> No</s>"
    assert all(label == IGNORE_INDEX for t, label in zip(enc.input_ids, enc.labels) if t == image_id)
    assert enc.has_image and not enc.truncated


def test_prompt_for_generation_ends_at_assistant(tokenizer):
    tmpl = VicunaV1(tokenizer, image_seq_length=9, system="A chat.")
    full = tmpl.encode(CONV[:2]).input_ids
    prompt = tmpl.prompt("What digit is at the top?", with_image=True)
    assert full[: len(prompt)] == prompt
    assert full[len(prompt):] == tmpl.continuation("7")


def test_trailing_image_token_moves_to_front():
    assert normalise_image_position("What is this?\n<image>") == "<image>\nWhat is this?"
    assert normalise_image_position("<image>\nWhat?") == "<image>\nWhat?"


def test_truncation_counts_fully_masked(tokenizer):
    tmpl = VicunaV1(tokenizer, image_seq_length=2, system="A chat.", max_length=12)
    enc = tmpl.encode([{"from": "human", "value": "What digit is at the top? " * 3}, {"from": "gpt", "value": "7"}])
    assert enc.truncated and enc.supervised == 0


def test_chat_template_renders_the_same_ids(tokenizer):
    """The template saved with a model's processor: rendered and tokenised whole, it gives encode's ids (one
    image token per image here; the processor expands it); this tokenizer adds no <s> itself, so it renders it."""
    tmpl = VicunaV1(tokenizer, image_seq_length=1, system="A chat.")
    messages = [{"role": "user" if turn["from"] == "human" else "assistant", "content": turn["value"]}
                for turn in CONV]
    tokenizer.chat_template = tmpl.chat_template()
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<s>A chat. USER: <image>\nWhat digit is at the top? ASSISTANT: 7</s>USER: Is there a 3 in the " \
                   "image? ASSISTANT: No</s>"
    assert tokenizer(text)["input_ids"] == tmpl.encode(CONV).input_ids
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert tokenizer(prompt)["input_ids"] == tmpl.prompt("What digit is at the top?", with_image=True)
    system = [{"role": "system", "content": "Be brief."}] + messages[:1]
    assert tokenizer.apply_chat_template(system, tokenize=False).startswith("<s>Be brief. USER: <image>\n")


def test_tokenizer_learns_the_rendered_prompt(tmp_path):
    """Trained on the conversations as the template renders them, the role markers and the answers' leading
    spaces become tokens of their own (trained on the bare turn texts, " ASSISTANT:" was 11 characters)."""
    from selectbench.models.conversation import template_texts
    from selectbench.embedded.tokenizer import conversation_texts

    assert template_texts(CONV) == ["USER: ", "\nWhat digit is at the top? ASSISTANT:", " 7",
                                    "USER: Is there a 3 in the image? ASSISTANT:", " No"]
    tok = train_tokenizer(conversation_texts([{"conversations": CONV}] * 20), 300, tmp_path / "tok")
    tmpl = VicunaV1(tok, image_seq_length=9, system="")
    assert tok.tokenize(" ASSISTANT:") == ["ĠASSISTANT", ":"]
    answers = [t for t, label in zip(tmpl.encode(CONV).input_ids, tmpl.encode(CONV).labels) if label != IGNORE_INDEX]
    assert tok.convert_ids_to_tokens(answers) == ["Ġ", "7", "</s>", "ĠNo", "</s>"]


def test_paper_proxy_follows_tinyllavas_phi_template_without_bos(stablelm_dir, clip_dir):
    """TinyLLaVA's phi template (the XMAS proxy's) adds no BOS before the system prompt; StableLM-2's tokenizer
    names <|endoftext|> as its BOS, which LLaVA's vicuna_v1 (the target's) would put first."""
    import types
    from pathlib import Path

    import yaml

    from selectbench.models.assemble import assemble_llava
    from selectbench.models.conversation import make_template
    from tests.models.conftest import pretrained_cfg

    _, tokenizer, _ = assemble_llava(pretrained_cfg(stablelm_dir, clip_dir, None))
    models = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "paper.yaml").read_text())["models"]
    config = types.SimpleNamespace(image_seq_length=3)
    proxy = make_template(tokenizer, config, models["proxy"]["template"])
    ids = proxy.encode(CONV).input_ids
    assert tokenizer.bos_token == "<|endoftext|>" and ids[0] != tokenizer.bos_token_id
    assert tokenizer.decode(ids).startswith("A chat between a curious user")
    assert ids == tokenizer(tokenizer.decode(ids), add_special_tokens=False)["input_ids"]
    assert proxy.prompt("What?", with_image=False)[0] != tokenizer.bos_token_id
    assert "bos_token" not in proxy.chat_template()
    target = make_template(tokenizer, config, models["target"]["template"])
    assert target.encode(CONV).input_ids == [tokenizer.bos_token_id] + ids
