"""LLaVA's vicuna_v1 prompt and label masking: only assistant answers (and their closing </s>) are supervised.

Prompt: "{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>"
Token ids are built segment by segment so that the image placeholder expands to exactly the number of image
tokens the vision tower produces, and so that a label boundary never falls inside a merged token.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"
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


def normalise_image_position(text: str) -> str:
    """LLaVA moves a trailing "<image>" to the front of the first human turn before tokenising."""
    if IMAGE_PLACEHOLDER in text and not text.startswith(IMAGE_PLACEHOLDER):
        text = IMAGE_PLACEHOLDER + "\n" + text.replace(IMAGE_PLACEHOLDER, "").strip()
    return text


class VicunaV1:
    """Encodes LLaVA conversations for training and builds generation prompts for evaluation."""

    def __init__(self, tokenizer, image_seq_length: int, system: str = DEFAULT_SYSTEM, max_length: int = 2048):
        self.tok = tokenizer
        self.image_seq_length = image_seq_length
        self.system = system
        self.max_length = max_length
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos_id = tokenizer.eos_token_id

    def _text(self, text: str) -> list[int]:
        """Token ids of a text segment, with each <image> placeholder expanded to the image tokens."""
        ids: list[int] = []
        for k, part in enumerate(text.split(IMAGE_PLACEHOLDER)):
            if k:
                ids += [self.image_token_id] * self.image_seq_length
            if part:
                ids += self.tok(part, add_special_tokens=False)["input_ids"]
        return ids

    def _human(self, k: int, question: str) -> str:
        prefix = (self.system + " ") if k == 0 and self.system else ""
        return f"{prefix}USER: {question} ASSISTANT:"

    def encode(self, conversations: list[dict]) -> Encoded:
        """input_ids and labels for a multi-turn record (human/gpt alternating, human first)."""
        input_ids, labels = list(self.bos), [IGNORE_INDEX] * len(self.bos)
        has_image = False
        for k in range(0, len(conversations) - 1, 2):
            question = conversations[k]["value"]
            if k == 0:
                question = normalise_image_position(question)
            has_image |= IMAGE_PLACEHOLDER in question
            prompt = self._text(self._human(k, question))
            answer = self._text(" " + conversations[k + 1]["value"]) + [self.eos_id]
            input_ids += prompt + answer
            labels += [IGNORE_INDEX] * len(prompt) + answer
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
        """Token ids an answer adds after the prompt (for log-likelihood scoring)."""
        return self._text(" " + answer) + [self.eos_id]
