"""LLaVA's vicuna_v1 prompt and label masking: only assistant answers (and their closing </s>) are supervised.

Prompt: "{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>"
after the tokenizer's BOS where the template's `bos` says so: LLaVA's Llama tokenizer adds <s>; TinyLLaVA's "phi"
template, the XMAS proxy's, is the same prompt with the LM's eos closing each answer and no BOS.
The whole conversation is tokenised as one string, as LLaVA and transformers' LlavaProcessor do (with a
SentencePiece tokenizer such as Vicuna's, a segment tokenised on its own would gain a leading "▁"), and each
<image> token then expands to exactly the number of image tokens the vision tower produces. Labels come from
character offsets: a token is supervised when it starts inside an answer (its leading space included) or its
closing </s>.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"
_ASSISTANT = "ASSISTANT:"
DEFAULT_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                  "The assistant gives helpful, detailed, and polite answers to the user's questions.")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    has_image: bool
    truncated: bool

    @property
    def supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def human_turn(question: str, prefix: str = "") -> str:
    """One human turn as the prompt renders it, up to the assistant's answer."""
    return f"{prefix}USER: {question} {_ASSISTANT}"


def template_texts(conversations: list[dict]) -> list[str]:
    """The plain-text pieces of a conversation as VicunaV1 renders it, cut where special tokens (<image>, </s>)
    stand: what a tokenizer trained for this template should see (no system prompt)."""
    pieces = []
    for k in range(0, len(conversations) - 1, 2):
        question = conversations[k]["value"]
        if k == 0:
            question = normalise_image_position(question)
        pieces += human_turn(question).split(IMAGE_PLACEHOLDER)
        pieces.append(" " + conversations[k + 1]["value"])
    return [p for p in pieces if p]


def normalise_image_position(text: str) -> str:
    """LLaVA moves a trailing "<image>" to the front of the first human turn before tokenising."""
    if IMAGE_PLACEHOLDER in text and not text.startswith(IMAGE_PLACEHOLDER):
        text = IMAGE_PLACEHOLDER + "\n" + text.replace(IMAGE_PLACEHOLDER, "").strip()
    return text


class VicunaV1:
    """Encodes LLaVA conversations for training and builds generation prompts for evaluation."""

    def __init__(self, tokenizer, image_seq_length: int, system: str = DEFAULT_SYSTEM, max_length: int = 2048,
                 bos: bool = True):
        self.tok = tokenizer
        self.image_seq_length = image_seq_length
        self.system = system
        self.max_length = max_length
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        self.bos = [tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []
        self.eos_id = tokenizer.eos_token_id
        self.eos_text = tokenizer.eos_token
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{type(tokenizer).__name__}: the vicuna_v1 template needs a fast tokenizer (offsets)")
        for name, text, token_id in (("image", IMAGE_PLACEHOLDER, self.image_token_id),
                                     ("eos", self.eos_text, self.eos_id)):
            if tokenizer(text, add_special_tokens=False)["input_ids"] != [token_id]:
                raise ValueError(f"{type(tokenizer).__name__}: {text!r} is not a single special token ({name})")

    def _ids(self, text: str, spans: list[tuple[int, int]] = ()) -> tuple[list[int], list[bool]]:
        """Token ids of a text tokenised as one string, each <image> expanded to the image tokens, and for each
        id whether its token starts inside one of the character spans."""
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = []
        inside: list[bool] = []
        for token, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"]):
            n = self.image_seq_length if token == self.image_token_id else 1
            ids += [token] * n
            inside += [any(a <= start < b for a, b in spans)] * n
        return ids, inside

    def _text(self, text: str) -> list[int]:
        """Token ids of a text, with each <image> placeholder expanded to the image tokens."""
        return self._ids(text)[0]

    def _human(self, k: int, question: str) -> str:
        return human_turn(question, (self.system + " ") if k == 0 and self.system else "")

    def encode(self, conversations: list[dict]) -> Encoded:
        """input_ids and labels for a multi-turn record (human/gpt alternating, human first)."""
        text, answers, has_image = "", [], False
        for k in range(0, len(conversations) - 1, 2):
            question = conversations[k]["value"]
            if k == 0:
                question = normalise_image_position(question)
            has_image |= IMAGE_PLACEHOLDER in question
            text += self._human(k, question)
            answer = " " + conversations[k + 1]["value"] + self.eos_text
            answers.append((len(text), len(text) + len(answer)))
            text += answer
        ids, supervised = self._ids(text, answers)
        input_ids = list(self.bos) + ids
        labels = [IGNORE_INDEX] * len(self.bos) + [t if s else IGNORE_INDEX for t, s in zip(ids, supervised)]
        truncated = len(input_ids) > self.max_length
        if truncated:
            input_ids, labels = input_ids[: self.max_length], labels[: self.max_length]
            # never cut through the image tokens: an image whose tokens are cut cannot be placed
            if has_image and input_ids.count(self.image_token_id) != self.image_seq_length:
                raise ValueError(f"max_length {self.max_length} cuts through the image tokens")
        return Encoded(input_ids, labels, has_image, truncated)

    def prompt(self, question: str, with_image: bool) -> list[int]:
        """Generation prompt for one question (ends right after "ASSISTANT:")."""
        text = (IMAGE_PLACEHOLDER + "\n" + question) if with_image else question
        return list(self.bos) + self._text(self._human(0, text))

    def continuation(self, answer: str) -> list[int]:
        """Token ids an answer adds after the prompt (for log-likelihood scoring), tokenised in its context (after
        "ASSISTANT:"), as in the whole conversation."""
        head = self._text(_ASSISTANT)
        ids = self._text(_ASSISTANT + " " + answer + self.eos_text)
        if ids[: len(head)] != head:
            raise ValueError(f"{type(self.tok).__name__} merges {_ASSISTANT!r} with the answer {answer!r}")
        return ids[len(head):]

    def chat_template(self) -> str:
        """A Jinja chat template that renders this prompt (saved with the model's processor, so that transformers'
        apply_chat_template and lmms-eval's llava_hf build the same ids as encode / prompt / continuation).
        Messages: optional system first, then user / assistant turns; content is a string with "<image>"
        placeholders or a list of {"type": "image"} / {"type": "text", "text": ...} parts (images first, as
        LLaVA puts them). bos_token is rendered only where the tokenizer does not add it itself."""
        adds_bos = bool(self.bos) and self.tok("x")["input_ids"][:1] == self.bos
        bos = "{{- bos_token -}}" if self.bos and not adds_bos else ""
        return (
            "{%- set ns = namespace(system=" + json.dumps(self.system) + ", first=true) -%}"
            "{%- if messages and messages[0]['role'] == 'system' -%}"
            "{%- set ns.system = messages[0]['content'] -%}{%- set messages = messages[1:] -%}{%- endif -%}"
            + bos +
            "{%- for message in messages -%}"
            "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
            "{%- else -%}{%- set parts = namespace(images='', text='') -%}"
            "{%- for part in message['content'] -%}"
            "{%- if part['type'] == 'image' -%}{%- set parts.images = parts.images + '<image>\\n' -%}"
            "{%- elif part['type'] == 'text' -%}{%- set parts.text = parts.text + part['text'] -%}{%- endif -%}"
            "{%- endfor -%}{%- set text = parts.images + parts.text -%}{%- endif -%}"
            "{%- if message['role'] == 'user' -%}"
            "{%- if ns.first -%}"
            "{%- if '<image>' in text and not text.startswith('<image>') -%}"
            "{%- set text = '<image>\\n' + text.replace('<image>', '').strip() -%}{%- endif -%}"
            "{%- if ns.system -%}{{- ns.system + ' ' -}}{%- endif -%}{%- set ns.first = false -%}{%- endif -%}"
            "{{- 'USER: ' + text -}}"
            "{%- else -%}{{- ' ASSISTANT: ' + text + eos_token -}}{%- endif -%}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- ' ASSISTANT:' -}}{%- endif -%}"
        )


def make_template(tokenizer, model, template_cfg: dict) -> VicunaV1:
    """The vicuna_v1 template of a role (its `template:` block: system, max_length, bos — whether ids start with the
    tokenizer's BOS, false for TinyLLaVA's phi); model: a LLaVA model or just its config (all the template needs
    is image_seq_length)."""
    config = getattr(model, "config", model)
    return VicunaV1(tokenizer, config.image_seq_length, system=template_cfg.get("system", ""),
                    max_length=template_cfg.get("max_length", 2048), bos=template_cfg.get("bos", True))
