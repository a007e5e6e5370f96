"""Multiple-choice prompts as LLaVA-1.5 asks MMBench: lettered options, one per line, then the instruction to
answer with the letter. The embedded MMBench-like set, its pool questions and the scorers share this format."""

from __future__ import annotations

OPTION_LETTERS = "ABCD"
MC_SUFFIX = "Answer with the option's letter from the given choices directly."


def format_options(stem: str, options: list[str]) -> str:
    lines = [stem] + [f"{OPTION_LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines + [MC_SUFFIX])


def option_answer(options: list[str], index: int) -> str:
    return f"{OPTION_LETTERS[index]}. {options[index]}"
