"""The full-data reference: every example. Relative performance divides by this method's scores."""

import numpy as np

from selectbench.selection.base import Method


class Full(Method):
    name = "full"
    is_reference = True

    def select(self, ctx, scores, n, seed):
        return np.arange(ctx.size)
