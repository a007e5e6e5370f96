"""Scenes for the embedded dataset: real handwritten digits (scikit-learn's load_digits) on a 3×3 grid.

A scene is a 3×3 grid whose cells are empty or hold one 8×8 digit image. Rendering puts each digit in its
cell, so the image is 24×24 and a CLIP patch of 8 pixels sees exactly one cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID = 3
CELL = 8
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
ROWS = ("top", "middle", "bottom")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Digits that people (and models) confuse: POPE's "adversarial" negatives and MMBench-like distractors.
CONFUSABLE = {0: 6, 1: 7, 2: 7, 3: 8, 4: 9, 5: 6, 6: 5, 7: 1, 8: 3, 9: 4}


@dataclass(frozen=True)
class Scene:
    """Digit label per cell (-1 = empty) and the index of the source digit image per cell (-1 = empty)."""

    labels: tuple[int, ...]
    sources: tuple[int, ...]

    @property
    def filled(self) -> list[int]:
        return [c for c, d in enumerate(self.labels) if d >= 0]

    @property
    def digits(self) -> list[int]:
        """Digits in reading order (left to right, top to bottom)."""
        return [self.labels[c] for c in self.filled]

    def cell_of(self, digit: int) -> int:
        return self.labels.index(digit)

    def row(self, r: int) -> list[int]:
        return list(self.labels[r * GRID:(r + 1) * GRID])


class DigitBank:
    """The digit images of one split (train or held-out), indexed by label."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, indices: np.ndarray):
        self.images = images
        self.by_label = {d: indices[targets[indices] == d] for d in range(10)}

    def draw(self, rng: np.random.Generator, digit: int) -> int:
        return int(rng.choice(self.by_label[digit]))


def load_digit_banks(holdout_fraction: float, seed: int) -> tuple[DigitBank, DigitBank]:
    """Split scikit-learn's 1,797 real digits into disjoint train and held-out banks."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32)
    targets = np.asarray(digits.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(targets))
    n_holdout = int(round(holdout_fraction * len(targets)))
    return (DigitBank(images, targets, order[n_holdout:]),
            DigitBank(images, targets, order[:n_holdout]))


def random_scene(
    rng: np.random.Generator,
    bank: DigitBank,
    n_digits: int,
    *,
    allow_repeats: bool = False,
    full_row: int | None = None,
    digit_weights: np.ndarray | None = None,
) -> Scene:
    """A scene with n_digits digits in random cells; distinct digits unless allow_repeats."""
    cells = list(rng.permutation(GRID * GRID)[:n_digits])
    if full_row is not None:
        row_cells = [full_row * GRID + i for i in range(GRID)]
        others = [c for c in cells if c not in row_cells]
        cells = row_cells + others[: max(0, n_digits - GRID)]
    p = None if digit_weights is None else digit_weights / digit_weights.sum()
    digits = rng.choice(10, size=len(cells), replace=allow_repeats, p=p)
    labels = [-1] * (GRID * GRID)
    sources = [-1] * (GRID * GRID)
    for cell, digit in zip(cells, digits):
        labels[cell] = int(digit)
        sources[cell] = bank.draw(rng, int(digit))
    return Scene(tuple(labels), tuple(sources))


def render(scene: Scene, bank: DigitBank) -> np.ndarray:
    """24×24×3 uint8 image: white digits (load_digits' 0–16 ink scale) on black."""
    canvas = np.zeros((GRID * CELL, GRID * CELL), dtype=np.float32)
    for cell, source in enumerate(scene.sources):
        if source < 0:
            continue
        r, c = divmod(cell, GRID)
        canvas[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = bank.images[source]
    gray = np.clip(canvas * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)
