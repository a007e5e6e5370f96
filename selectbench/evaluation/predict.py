"""Model inference for evaluation: batched greedy generation and log-likelihood scoring of candidates."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from tqdm import tqdm

from selectbench.data.images import ImageLoader
from selectbench.models.conversation import VicunaV1
from selectbench.models.padding import pad_right


def _chunks(seq: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start:start + size]


@torch.inference_mode()
def generate(model, tokenizer, template: VicunaV1, images: ImageLoader, items: list[dict],
             batch_size: int = 64, max_new_tokens: int = 32, desc: str = "generate") -> list[str]:
    """Greedy answers to items {question, image?}; prompts are left-padded so generation appends cleanly."""
    model.eval()
    answers: list[str] = []
    for batch in tqdm(list(_chunks(items, batch_size)), desc=desc, mininterval=5):
        prompts = [template.prompt(it["question"], with_image="image" in it) for it in batch]
        width = max(map(len, prompts))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, p in enumerate(prompts):
            ids[row, width - len(p):] = torch.tensor(p)
            mask[row, width - len(p):] = 1
        kwargs = {}
        pictures = [images.load(it["image"], it.get("id")) for it in batch if "image" in it]
        if pictures:
            kwargs["pixel_values"] = images.pixel_values(pictures)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs)
        answers += [a.strip() for a in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
    return answers


@torch.inference_mode()
def loglikelihoods(model, tokenizer, template: VicunaV1, images: ImageLoader, items: list[dict],
                   batch_size: int = 64, desc: str = "loglikelihood") -> list[float]:
    """Sum of log p(continuation | prompt) for items {question, continuation, image?} (lmms-eval's
    loglikelihood request type)."""
    model.eval()
    scores: list[float] = []
    for batch in tqdm(list(_chunks(items, batch_size)), desc=desc, mininterval=5):
        seqs, starts = [], []
        for it in batch:
            prompt = template.prompt(it["question"], with_image="image" in it)
            starts.append(len(prompt))
            seqs.append(prompt + template.continuation(it["continuation"]))
        ids, mask = pad_right(seqs, tokenizer.pad_token_id)
        kwargs = {}
        pictures = [images.load(it["image"], it.get("id")) for it in batch if "image" in it]
        if pictures:
            kwargs["pixel_values"] = images.pixel_values(pictures)
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask, **kwargs).logits.float(), dim=-1)
        for row, (s, start) in enumerate(zip(seqs, starts)):
            targets = torch.tensor(s[start:])
            token_lp = logprobs[row, start - 1:len(s) - 1].gather(1, targets[:, None])
            scores.append(float(token_lp.sum()))
    return scores
