"""The scene corpus of the embedded default's stage 0: many cheap synthetic scenes (images rendered from the pool's
digit bank, questions in the pool's own words), beyond the pool, for the target's pretraining.

Membership ("Is there a 7 in the image?") is what the tiny model cannot learn from the pool alone: it needs about
10,000 unique scenes asked in batches of their own, and image tokens that read as the characters of the question
(selectbench.embedded.projector_align). Stage 0 trains on this corpus after the projector alignment, the projector
frozen for the presence-only part so that the language model learns membership on those tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from selectbench.embedded import questions as Q
from selectbench.embedded.scenes import GRID, DigitBank, Scene

SCENE_STREAM = 2  # a random stream of its own: the pool, captions and evaluation sets do not change
CAPTIONS = {"grid": Q.caption, "set": Q.digit_set}


def random_corpus_scene(rng: np.random.Generator, bank: DigitBank, full_row: bool = False) -> Scene:
    """1–6 digits (repeats allowed) in random cells, one row filled where full_row; source images from `bank`."""
    labels = [-1] * (GRID * GRID)
    for cell in rng.permutation(GRID * GRID)[: int(rng.integers(1, 7))]:
        labels[int(cell)] = int(rng.integers(10))
    if full_row:
        row = int(rng.integers(GRID))
        for cell in range(row * GRID, (row + 1) * GRID):
            labels[cell] = labels[cell] if labels[cell] >= 0 else int(rng.integers(10))
    return Scene(tuple(labels), tuple(bank.draw(rng, d) if d >= 0 else -1 for d in labels))


def corpus_record(rng: np.random.Generator, families: dict[str, float], rid: str, bank: DigitBank,
                  save: Callable[[Scene], str]) -> dict:
    """One question about a new scene, its family drawn from `families` (weights): presence or another of the
    pool's families (identify, reading, ...; presence where the scene cannot support it), or one of the stage-1
    caption styles that list the scene ("grid", "set")."""
    names = list(families)
    weights = np.array([families[f] for f in names], dtype=np.float64)
    family = str(rng.choice(names, p=weights / weights.sum()))
    scene = random_corpus_scene(rng, bank, full_row=family == "reading")
    if family in CAPTIONS:
        question, answer = Q.CAPTION_PROMPTS[family], CAPTIONS[family](scene)
    else:
        qa = Q.ask(family, rng, scene) or Q.presence(rng, scene)
        question, answer, family = qa.question, qa.answer, qa.family
    return {"id": rid, "image": save(scene), "conversations": [{"from": "human", "value": "<image>\n" + question},
                                                                {"from": "gpt", "value": answer}], "family": family}


def build_scene_corpus(parts: list[dict[str, Any]], seed: int, bank: DigitBank,
                       save: Callable[[Scene], str]) -> list[list[dict]]:
    """One list of records (LLaVA format) per configured part {size, families}; `save` renders a scene and
    returns its image path."""
    rng = np.random.default_rng([seed, SCENE_STREAM])
    return [[corpus_record(rng, part.get("families", {"presence": 1.0}), f"scene-{k}-{i:06d}", bank, save)
             for i in range(part["size"])] for k, part in enumerate(parts)]
