"""One spec per benchmark: the single place that says what a benchmark is called in the config, which metric the
tables show, its chance level, the built-in scorer that scores the embedded sets (if any) and the lmms-eval leaf task
that scores the real one (its metric keys, whether it needs a judge). The config's check, both evaluators and the
tables read these; adding a benchmark is one entry here (plus its scorer or its embedded set, where new).

Import-light (no torch): the planner and the report read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinSpec:
    """The built-in evaluator's scoring of an embedded set: its scorer class ("module:Class", a
    selectbench.evaluation.benchmarks.Benchmark), the primary metric and the chance level (the metric a model must
    clearly beat to count as having learned the benchmark; see report.tables)."""

    scorer: str
    primary: str
    chance: str = ""
    chance_level: tuple[str, float] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """An lmms-eval leaf task: metrics read from results[task]["<metric>,none"] with the factor that puts them in
    percent (100 for 0–1 metrics, 1 for 0–100 ones), the primary metric, and the protocol its numbers follow."""

    name: str
    metrics: dict[str, float]
    primary: str
    protocol: str
    judge: bool = False        # scored by an LLM judge (OpenAI-compatible API)
    generates: bool = True     # generate_until: empty answers are counted
    hub: bool = True           # dataset from the Hugging Face Hub (token: True in its YAML)
    chance: str = ""
    chance_level: tuple[str, float] | None = None
    alternative: str = ""      # what to run instead when no judge is configured
    temperature: float = 0.0   # the task YAML's own generation temperature (llava_hf samples when > 0)


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str                          # as `datasets.<d>.benchmarks` names it
    builtin: BuiltinSpec | None = None  # scored by the built-in evaluator (evaluation.backend builtin)
    lmms: TaskSpec | None = None       # an lmms-eval leaf task (evaluation.backend lmms_eval)


_PCT = 100.0
_LMMS = (
    # pope_yes_ratio is left out: lmms-eval 0.7.3 computes it from the ground truth, not from the answers
    TaskSpec("pope", {"pope_accuracy": _PCT, "pope_f1_score": _PCT, "pope_precision": _PCT, "pope_recall": _PCT},
             "pope_f1_score", "POPE, adversarial + popular + random pooled; an answer counts only if exactly yes/no",
             chance="accuracy 50; f1 66.7 for always-yes", chance_level=("pope_accuracy", 50.0)),
    TaskSpec("textvqa_val", {"exact_match": _PCT}, "exact_match",
             "TextVQA val, VQA soft accuracy, no OCR tokens in the prompt"),
    TaskSpec("vqav2_val", {"exact_match": _PCT}, "exact_match",
             "VQAv2 val (not test-dev), VQA soft accuracy"),
    TaskSpec("gqa", {"exact_match": _PCT}, "exact_match", "GQA testdev-balanced, exact match"),
    TaskSpec("mmbench_en_dev", {"gpt_eval_score": 1.0}, "gpt_eval_score",
             "MMBench-EN dev, CircularEval, unparsed answers matched by the judge", judge=True, chance="0.4 circular",
             alternative="mmbench_en_dev_static (rule-based answer extraction, no judge)"),
    TaskSpec("mmbench_cn_dev", {"gpt_eval_score": 1.0}, "gpt_eval_score",
             "MMBench-CN dev, CircularEval, unparsed answers matched by the judge", judge=True, chance="0.4 circular",
             alternative="none in lmms-eval 0.7.3 (no static CN variant)"),
    TaskSpec("mmbench_en_dev_static", {"gpt_eval_score": 1.0}, "gpt_eval_score",
             "MMBench-EN dev, CircularEval, rule-based answer extraction (no judge; unparsed = wrong)",
             chance="0.4 circular"),
    TaskSpec("mmvet", {"gpt_eval_score": 1.0}, "gpt_eval_score",
             "MM-Vet, lmms-eval's prompt and judge (not LLaVA's scripts)", judge=True,
             alternative="none (every answer needs the judge)", temperature=0.2),
)
_B = "selectbench.evaluation.benchmarks:"
_BUILTIN = {
    "pope": BuiltinSpec(_B + "Pope", "f1", "accuracy 50; f1 66.7 for always-yes", ("accuracy", 50.0)),
    "textvqa": BuiltinSpec(_B + "TextVQA", "vqa_accuracy", "about 0.1 (a three-digit string guessed at random)",
                           ("vqa_accuracy", 0.1)),
    "vqav2": BuiltinSpec(_B + "VQAv2", "vqa_accuracy", "about 24 (yes/no 50, digits 10, counts ~25, in equal thirds)",
                         ("vqa_accuracy", 24.0)),
    "gqa": BuiltinSpec(_B + "GQA", "exact_match", "about 20 (half 10-way relations, a quarter yes/no relations, a "
                       "quarter 10-way comparisons)", ("exact_match", 20.0)),
    "mmbench": BuiltinSpec(_B + "MMBench", "circular_accuracy", "0.4 circular (0.25^4), 25 vanilla",
                           ("circular_accuracy", 0.4)),
    "mmvet": BuiltinSpec("selectbench.embedded.judge:DescriptionJudge", "judge_score", "0 for an empty answer; about 10 for a right-format guess",
                         ("judge_score", 10.0)),
}
BENCHMARKS: dict[str, BenchmarkSpec] = {
    name: BenchmarkSpec(name, builtin=_BUILTIN.get(name), lmms=next((t for t in _LMMS if t.name == name), None))
    for name in dict.fromkeys([*_BUILTIN, *(t.name for t in _LMMS)])}
# the lmms-eval leaf tasks known, by task name
TASKS: dict[str, TaskSpec] = {s.lmms.name: s.lmms for s in BENCHMARKS.values() if s.lmms}


def scoring(benchmark: str, protocol: str = ""):
    """How a benchmark's rows were scored: its lmms-eval task when the rows came from lmms-eval (or it has no
    built-in scorer), else its built-in spec. Both carry primary, chance and chance_level."""
    spec = BENCHMARKS.get(benchmark)
    if spec is None:
        raise ValueError(f"{benchmark}: not a known benchmark (selectbench/evaluation/specs.py: {sorted(BENCHMARKS)})")
    if (protocol.startswith("lmms-eval") or spec.builtin is None) and spec.lmms is not None:
        return spec.lmms
    return spec.builtin


def check_backend(benchmarks: list[str], backend: str, where: str) -> None:
    """Every benchmark has a scorer on the configured backend."""
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"{where}: unknown benchmarks {unknown} (known: {sorted(BENCHMARKS)})")
    if backend == "builtin":
        wrong = [b for b in benchmarks if BENCHMARKS[b].builtin is None]
        if wrong:
            raise ValueError(f"{where}: {wrong} are lmms-eval tasks; the built-in evaluator scores "
                             f"{sorted(b for b, s in BENCHMARKS.items() if s.builtin)} (or set evaluation.backend: "
                             "lmms_eval)")
