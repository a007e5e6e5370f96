"""The MM-Vet-like embedded set's scorer: a deterministic rule-based judge of open-ended digit-scene descriptions
(no LLM judge exists offline), with partial credit."""

from __future__ import annotations

import re
from statistics import mean

from selectbench.evaluation.benchmarks import Benchmark, Row
from selectbench.evaluation.metrics import normalize_exact

_FACT = re.compile(r"\b(?:an?\s+)?(\d)\s+at\s+the\s+(top left|top right|bottom left|bottom right|top|bottom|left|"
                   r"right|center)\b")
_COUNT = re.compile(r"\b(\d+)\s+digits?\b")


def describe_judge(prediction: str, facts: list[list], count: int) -> float:
    """Partial credit in [0, 1] for an open-ended description, deterministic:
    0.6 × recall of (digit, position) facts + 0.2 × precision of stated facts + 0.2 × correct count."""
    text = normalize_exact(prediction.replace(",", " "))
    stated = {(int(d), pos) for d, pos in _FACT.findall(text)}
    gold = {(int(d), pos) for d, pos in facts}
    recall = len(stated & gold) / len(gold) if gold else 0.0
    precision = len(stated & gold) / len(stated) if stated else 0.0
    counts = [int(c) for c in _COUNT.findall(text)]
    count_ok = float(bool(counts) and counts[0] == count)
    return 0.6 * recall + 0.2 * precision + 0.2 * count_ok


class DescriptionJudge(Benchmark):
    """The MM-Vet-like set: open-ended descriptions scored by describe_judge (no LLM judge exists offline)."""

    max_new_tokens = 48

    def item_scores(self, items, outputs):
        return {"judge_score": [100 * describe_judge(o, it["facts"], it["count"]) for o, it in zip(outputs, items)]}

    def score(self, items, outputs):
        return [Row("judge_score", 100 * mean(describe_judge(o, it["facts"], it["count"])
                                              for o, it in zip(outputs, items)))]
