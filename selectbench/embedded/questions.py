"""Instruction families asked about a digit scene; shared by the training pool and the evaluation sets."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from selectbench.embedded.scenes import CONFUSABLE, GRID, POSITIONS, ROWS, Scene
from selectbench.evaluation.options import format_options, option_answer


@dataclass
class QA:
    family: str
    question: str
    answer: str
    extra: dict = field(default_factory=dict)


def _absent(scene: Scene) -> list[int]:
    return [d for d in range(10) if d not in scene.labels]


def identify(rng: np.random.Generator, scene: Scene) -> QA:
    cell = int(rng.choice(scene.filled))
    return QA("identify", f"What digit is at the {POSITIONS[cell]}?", str(scene.labels[cell]))


def presence(rng: np.random.Generator, scene: Scene, *, negative: int | None = None) -> QA:
    """Yes/no object existence. Pass `negative` to ask about a chosen absent digit."""
    if negative is None and rng.random() < 0.5:
        digit, answer = int(rng.choice(scene.digits)), "Yes"
    else:
        digit = negative if negative is not None else int(rng.choice(_absent(scene)))
        answer = "No"
    return QA("presence", f"Is there a {digit} in the image?", answer, {"digit": digit})


def multiple_choice(rng: np.random.Generator, scene: Scene) -> QA:
    """Which digit is at a position, four options; the answer names the letter and the option."""
    cell = int(rng.choice(scene.filled))
    correct = scene.labels[cell]
    pool = [d for d in range(10) if d != correct]
    confusable = CONFUSABLE[correct]
    distractors = [confusable] + [int(d) for d in rng.permutation([d for d in pool if d != confusable])[:2]]
    options = [str(correct)] + [str(d) for d in distractors]
    options = [options[i] for i in rng.permutation(len(options))]
    answer_index = options.index(str(correct))
    question = format_options(f"Which digit is at the {POSITIONS[cell]}?", options)
    return QA("multiple_choice", question, option_answer(options, answer_index),
              {"stem": f"Which digit is at the {POSITIONS[cell]}?", "options": options, "answer_index": answer_index})


def counting(rng: np.random.Generator, scene: Scene) -> QA:
    if rng.random() < 0.6:
        return QA("counting", "How many digits are in the image?", str(len(scene.filled)))
    digit = int(rng.choice(scene.digits))
    return QA("counting", f"How many times does the digit {digit} appear?", str(scene.digits.count(digit)))


def reading(rng: np.random.Generator, scene: Scene) -> QA:
    """Read the number written across a full row (the scene must have one)."""
    full = [r for r in range(GRID) if all(d >= 0 for d in scene.row(r))]
    r = int(rng.choice(full))
    return QA("reading", f"What number is written in the {ROWS[r]} row?", "".join(str(d) for d in scene.row(r)))


_DIRECTIONS = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}


def _neighbour(scene: Scene, cell: int, direction: str) -> int:
    """Digit in the adjacent cell in a direction, or -1."""
    r, c = divmod(cell, GRID)
    dr, dc = _DIRECTIONS[direction]
    rr, cc = r + dr, c + dc
    if not (0 <= rr < GRID and 0 <= cc < GRID):
        return -1
    return scene.labels[rr * GRID + cc]


def relation(rng: np.random.Generator, scene: Scene) -> QA:
    """Spatial relations between distinct digits: which digit is next to which, or is A above B."""
    pairs = [(cell, direction) for cell in scene.filled for direction in _DIRECTIONS
             if _neighbour(scene, cell, direction) >= 0 and scene.digits.count(scene.labels[cell]) == 1]
    if pairs and rng.random() < 0.5:
        cell, direction = pairs[int(rng.integers(len(pairs)))]
        anchor = scene.labels[cell]
        return QA("relation", f"Which digit is directly {direction} the {anchor}?",
                  str(_neighbour(scene, cell, direction)))
    unique = [c for c in scene.filled if scene.digits.count(scene.labels[c]) == 1]
    a, b = (int(x) for x in rng.choice(unique, size=2, replace=False))
    direction = str(rng.choice(list(_DIRECTIONS)))
    (ra, ca), (rb, cb) = divmod(a, GRID), divmod(b, GRID)
    truth = {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[direction]
    return QA("relation", f"Is the {scene.labels[a]} {direction} the {scene.labels[b]}?", "Yes" if truth else "No")


def compare(rng: np.random.Generator, scene: Scene) -> QA:
    """Compositional: compare the digits at two positions."""
    a, b = (int(x) for x in rng.choice(scene.filled, size=2, replace=False))
    da, db = scene.labels[a], scene.labels[b]
    if da == db:
        return QA("compare", f"Are the digits at the {POSITIONS[a]} and the {POSITIONS[b]} the same?", "Yes")
    if rng.random() < 0.5:
        return QA("compare", f"Which is larger, the digit at the {POSITIONS[a]} or at the {POSITIONS[b]}?",
                  str(max(da, db)))
    return QA("compare", f"Are the digits at the {POSITIONS[a]} and the {POSITIONS[b]} the same?", "No")


def describe_facts(scene: Scene) -> list[tuple[int, str]]:
    return [(scene.labels[c], POSITIONS[c]) for c in scene.filled]


def description(rng: np.random.Generator, scene: Scene) -> QA:
    facts = describe_facts(scene)
    parts = [f"{'an' if d == 8 else 'a'} {d} at the {pos}" for d, pos in facts]
    count = len(facts)
    body = parts[0] if count == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    noun = "digit" if count == 1 else "digits"
    answer = f"There {'is' if count == 1 else 'are'} {count} {noun}: {body}."
    return QA("description", "Describe the image in detail.", answer, {"facts": facts, "count": count})


def caption(scene: Scene) -> str:
    """Stage-1 alignment caption: the grid row by row, "-" for an empty cell (e.g. "4 - 8 / 5 - - / - 3 -")."""
    rows = [" ".join(str(d) if d >= 0 else "-" for d in scene.row(r)) for r in range(GRID)]
    return " / ".join(rows)


def digit_set(scene: Scene) -> str:
    """Stage-1 caption: the distinct digits present, in increasing order."""
    return ", ".join(str(d) for d in sorted(set(scene.digits)))


def text_only(rng: np.random.Generator) -> QA:
    """Text-only instruction (the ShareGPT part of LLaVA-665k): small arithmetic and comparisons."""
    a, b = (int(x) for x in rng.integers(0, 10, size=2))
    kind = rng.random()
    if kind < 0.4:
        return QA("text_only", f"What is {a} plus {b}?", str(a + b))
    if kind < 0.7:
        return QA("text_only", f"Which is larger, {a} or {b}?", str(max(a, b)))
    return QA("text_only", f"Write the number {a} in words.", ["zero", "one", "two", "three", "four", "five",
                                                                "six", "seven", "eight", "nine"][a])


IMAGE_FAMILIES = {
    "identify": identify,
    "presence": presence,
    "multiple_choice": multiple_choice,
    "counting": counting,
    "reading": reading,
    "relation": relation,
    "compare": compare,
    "description": description,
}


CAPTION_PROMPTS = {"grid": "Show the grid of digits.", "dense": "Where are the digits?",
                   "set": "Which digits appear?"}


def ask(family: str, rng: np.random.Generator, scene: Scene) -> QA | None:
    """One question of a family, or None where the scene cannot support it."""
    if family == "reading" and not any(all(d >= 0 for d in scene.row(r)) for r in range(3)):
        return None
    if family == "relation" and sum(scene.digits.count(d) == 1 for d in scene.digits) < 2:
        return None
    if family == "compare" and len(scene.filled) < 2:
        return None
    return IMAGE_FAMILIES[family](rng, scene)
