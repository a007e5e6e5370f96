"""From stored alignment trajectories (selectbench.features.trajectories) to XMAS's per-example features and
instability. Numpy only: this runs in the cheap score step, once per method instance."""

from __future__ import annotations

from typing import Any

import numpy as np

FEATURES = ("sum", "per_sigma", "loss")


def choose_checkpoints(available: int, which: Any) -> np.ndarray:
    """'all'; an int T (T checkpoints evenly spaced over the run, the last always included); or explicit
    (possibly negative) indices."""
    if which in (None, "all"):
        return np.arange(available)
    if isinstance(which, int) and not isinstance(which, bool):
        if not 1 <= which <= available:
            raise ValueError(f"checkpoints={which}, but the proxy run saved {available}")
        return np.unique(np.round(np.linspace(available - 1, 0, which)[::-1]).astype(int))
    indices = [int(i) for i in which]
    if any(not -available <= i < available for i in indices):
        raise ValueError(f"checkpoint indices {indices} out of range for {available} checkpoints")
    return np.array(sorted({i % available for i in indices}))


def trajectory_matrix(sv: np.ndarray, loss: np.ndarray, checkpoints: np.ndarray, feature: str) -> np.ndarray:
    """sv (N, T, L', k), loss (N, T) → (N, T', D) per-checkpoint vectors:
    sum: D = L' (sum of the top-k singular values per layer group); per_sigma: D = L'·k; loss: D = 1."""
    if feature == "sum":
        out = sv[:, checkpoints].sum(axis=-1)
    elif feature == "per_sigma":
        picked = sv[:, checkpoints]
        out = picked.reshape(*picked.shape[:2], -1)
    elif feature == "loss":
        out = loss[:, checkpoints, None]
    else:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    return out.astype(np.float32)


def instability(trajectory: np.ndarray) -> np.ndarray:
    """Total variation over checkpoints, Σ_t ‖v_t − v_{t−1}‖₁ (XMAS: Σ_j |s(x,t_j) − s(x,t_{j−1})|)."""
    return np.abs(np.diff(trajectory, axis=1)).sum(axis=(1, 2))
