"""The built-in scorers of the embedded benchmarks, one class each; selectbench.evaluation.specs names them (with
their primary metric and chance level), in the spirit of lmms-eval's task registry.

Each benchmark turns its items into requests (generation or log-likelihood), then scores the outputs with
the real benchmark's metric. Values are reported on the scale papers use (percent, 0–100).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from statistics import mean
from typing import ClassVar

from selectbench.evaluation.options import format_options, option_answer
from selectbench.evaluation import metrics as M


@dataclass
class Row:
    metric: str
    value: float


class Benchmark:
    """Turns a benchmark's items into requests and scores the outputs with the real benchmark's metric."""

    request_type: ClassVar[str] = "generate"  # or "loglikelihood"
    max_new_tokens: ClassVar[int] = 8

    def requests(self, items: list[dict]) -> list[dict]:
        return [{"question": it["question"], **({"image": it["image"]} if "image" in it else {}), "id": it["id"]}
                for it in items]

    def score(self, items: list[dict], outputs: list) -> list[Row]:
        raise NotImplementedError


class Pope(Benchmark):
    max_new_tokens = 3

    def score(self, items, outputs):
        overall = M.pope_metrics(outputs, [it["answer"] for it in items])
        rows = [Row(k, 100 * v) for k, v in overall.items() if k != "precision" and k != "recall"]
        for split in sorted({it["split"] for it in items}):
            idx = [i for i, it in enumerate(items) if it["split"] == split]
            per = M.pope_metrics([outputs[i] for i in idx], [items[i]["answer"] for i in idx])
            rows += [Row(f"{split}_accuracy", 100 * per["accuracy"]), Row(f"{split}_f1", 100 * per["f1"])]
        return rows


class _SoftVQA(Benchmark):
    def score(self, items, outputs):
        return [Row("vqa_accuracy", 100 * mean(M.vqa_soft_accuracy(o, it["answers"]) for o, it in zip(outputs, items)))]


class TextVQA(_SoftVQA):
    """Read a row of digits; VQA soft accuracy over 10 references."""


class VQAv2(_SoftVQA):
    def score(self, items, outputs):
        rows = super().score(items, outputs)
        for kind in sorted({it["answer_type"] for it in items}):
            pairs = [(o, it) for o, it in zip(outputs, items) if it["answer_type"] == kind]
            rows.append(Row(f"{kind.replace('/', '_')}_accuracy",
                            100 * mean(M.vqa_soft_accuracy(o, it["answers"]) for o, it in pairs)))
        return rows


class GQA(Benchmark):
    def score(self, items, outputs):
        return [Row("exact_match", 100 * mean(M.exact_match(o, it["answer"]) for o, it in zip(outputs, items)))]


class MMBench(Benchmark):
    """Four options; each question asked once per rotation of its options (CircularEval). Answers are
    chosen by log-likelihood of each "<letter>. <option>" continuation."""

    request_type = "loglikelihood"

    def requests(self, items):
        out = []
        for it in items:
            for options, _ in M.circular_rotations(it["options"], it["answer_index"]):
                question = format_options(it["question"], options)
                for k in range(len(options)):
                    out.append({"question": question, "continuation": option_answer(options, k),
                                "image": it["image"], "id": it["id"]})
        return out

    def score(self, items, outputs):
        per_item, cursor = [], 0
        for it in items:
            rows = []
            for options, answer in M.circular_rotations(it["options"], it["answer_index"]):
                scores = outputs[cursor:cursor + len(options)]
                cursor += len(options)
                rows.append(max(range(len(options)), key=scores.__getitem__) == answer)
            per_item.append(rows)
        circular, vanilla = M.circular_accuracy(per_item)
        return [Row("circular_accuracy", 100 * circular), Row("vanilla_accuracy", 100 * vanilla)]


def scorer(benchmark: str) -> type[Benchmark]:
    """The built-in scorer class of a benchmark, as selectbench.evaluation.specs names it (imported on use)."""
    from selectbench.evaluation.specs import BENCHMARKS

    spec = BENCHMARKS.get(benchmark)
    if spec is None or spec.builtin is None:
        raise KeyError(f"{benchmark}: no built-in scorer (selectbench/evaluation/specs.py)")
    module, cls = spec.builtin.scorer.split(":")
    return getattr(importlib.import_module(module), cls)
