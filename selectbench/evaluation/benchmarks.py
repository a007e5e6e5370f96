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

    def item_scores(self, items: list[dict], outputs: list) -> dict[str, list[float]]:
        """Per item, the quantities its metrics are computed from (selectbench.evaluation.items), so any
        statistic can be recomputed without the model: a metric that is a mean over items, in percent, and for
        metrics that are not (POPE's F1) the indicators they are computed from."""
        raise NotImplementedError


class Pope(Benchmark):
    max_new_tokens = 3

    def item_scores(self, items, outputs):
        pred = [float(M.parse_yes_no(o) == "yes") for o in outputs]
        gold = [float(it["answer"] == "yes") for it in items]
        return {"accuracy": [100.0 * (p == g) for p, g in zip(pred, gold)], "predicted_yes": pred, "label_yes": gold}

    def score(self, items, outputs):
        overall = M.pope_metrics(outputs, [it["answer"] for it in items])
        rows = [Row(k, 100 * v) for k, v in overall.items() if k != "precision" and k != "recall"]
        for split in sorted({it["split"] for it in items}):
            idx = [i for i, it in enumerate(items) if it["split"] == split]
            per = M.pope_metrics([outputs[i] for i in idx], [items[i]["answer"] for i in idx])
            rows += [Row(f"{split}_accuracy", 100 * per["accuracy"]), Row(f"{split}_f1", 100 * per["f1"])]
        return rows


class _SoftVQA(Benchmark):
    def item_scores(self, items, outputs):
        return {"vqa_accuracy": [100 * M.vqa_soft_accuracy(o, it["answers"]) for o, it in zip(outputs, items)]}

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
    def item_scores(self, items, outputs):
        return {"exact_match": [100 * M.exact_match(o, it["answer"]) for o, it in zip(outputs, items)]}

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

    def _rotations_right(self, items, outputs) -> list[list[bool]]:
        """Per item, whether each rotation's highest-likelihood option is the right one."""
        per_item, cursor = [], 0
        for it in items:
            rows = []
            for options, answer in M.circular_rotations(it["options"], it["answer_index"]):
                scores = outputs[cursor:cursor + len(options)]
                cursor += len(options)
                rows.append(max(range(len(options)), key=scores.__getitem__) == answer)
            per_item.append(rows)
        return per_item

    def item_scores(self, items, outputs):
        per_item = self._rotations_right(items, outputs)
        return {"circular_accuracy": [100.0 * all(rows) for rows in per_item],
                "vanilla_accuracy": [100.0 * rows[0] for rows in per_item]}

    def score(self, items, outputs):
        circular, vanilla = M.circular_accuracy(self._rotations_right(items, outputs))
        return [Row("circular_accuracy", 100 * circular), Row("vanilla_accuracy", 100 * vanilla)]


def scorer(benchmark: str) -> type[Benchmark]:
    """The built-in scorer class of a benchmark, as selectbench.evaluation.specs names it (imported on use)."""
    from selectbench.evaluation.specs import BENCHMARKS

    spec = BENCHMARKS.get(benchmark)
    if spec is None or spec.builtin is None:
        raise KeyError(f"{benchmark}: no built-in scorer (selectbench/evaluation/specs.py)")
    module, cls = spec.builtin.scorer.split(":")
    return getattr(importlib.import_module(module), cls)
