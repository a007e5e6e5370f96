"""Text-only corpus for the embedded default's stage 0: the tiny language model's own pretraining, the role that
Vicuna's pretraining plays for LLaVA.

A scene is written as nine characters, one per grid cell in reading order ("4-85--3--": a digit or "-" for an
empty cell), and asked about in the pool's own words. Membership ("Is there a 7 in the image?") is what the
tiny model cannot learn from the images of the pool alone (it needs about 10,000 unique scenes, asked in
batches of their own first); from text it can, and the projector alignment then makes image tokens read as
these characters (selectbench.models.projector_align).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selectbench.data import questions as Q
from selectbench.data.embedded import CAPTION_PROMPTS, ask  # embedded imports this module lazily: no cycle
from selectbench.data.scenes import GRID, Scene

LANGUAGE_STREAM = 2  # a random stream of its own: the pool, captions and evaluation sets do not change
EMPTY_CELL = "-"


def text_scene(scene: Scene) -> str:
    return "".join(str(d) if d >= 0 else EMPTY_CELL for d in scene.labels)


def random_text_scene(rng: np.random.Generator, full_row: bool = False) -> Scene:
    """1–6 digits (repeats allowed) in random cells, one row filled where full_row; no source images."""
    labels = [-1] * (GRID * GRID)
    for cell in rng.permutation(GRID * GRID)[: int(rng.integers(1, 7))]:
        labels[int(cell)] = int(rng.integers(10))
    if full_row:
        row = int(rng.integers(GRID))
        for cell in range(row * GRID, (row + 1) * GRID):
            labels[cell] = labels[cell] if labels[cell] >= 0 else int(rng.integers(10))
    return Scene(tuple(labels), tuple(0 if d >= 0 else -1 for d in labels))


CAPTIONS = {"grid": Q.caption, "set": Q.digit_set}


def language_record(rng: np.random.Generator, families: dict[str, float], rid: str) -> dict:
    """One question about a text scene, its family drawn from `families` (weights): presence or another of the
    pool's families (identify, reading, ...; presence where the scene cannot support it), or one of the stage-1
    caption styles that list the scene ("grid", "set"), so the model also learns to read such scenes out."""
    names = list(families)
    weights = np.array([families[f] for f in names], dtype=np.float64)
    family = str(rng.choice(names, p=weights / weights.sum()))
    scene = random_text_scene(rng, full_row=family == "reading")
    if family in CAPTIONS:
        question, answer = CAPTION_PROMPTS[family], CAPTIONS[family](scene)
    else:
        qa = ask(family, rng, scene) or Q.presence(rng, scene)
        question, answer, family = qa.question, qa.answer, qa.family
    return {"id": rid, "conversations": [{"from": "human", "value": text_scene(scene) + "\n" + question},
                                         {"from": "gpt", "value": answer}], "family": family}


def build_language_corpus(parts: list[dict[str, Any]], seed: int) -> list[list[dict]]:
    """One list of text-only records (LLaVA format, no image) per configured part {size, families}."""
    rng = np.random.default_rng([seed, LANGUAGE_STREAM])
    return [[language_record(rng, part.get("families", {"presence": 1.0}), f"language-{k}-{i:06d}")
             for i in range(part["size"])] for k, part in enumerate(parts)]
