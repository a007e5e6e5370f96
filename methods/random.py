"""Random: a seeded uniform sample of the pool, text-only records included (every paper's floor)."""

import numpy as np

from selectbench.selection.base import Method


class Random(Method):
    name = "random"

    def select(self, ctx, scores, n, seed):
        return np.random.default_rng(seed).choice(ctx.size, size=n, replace=False)
