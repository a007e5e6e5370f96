"""Recorded versions: every artifact says which code and libraries produced it."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

PACKAGES = ("selectbench", "torch", "transformers", "tokenizers", "peft", "accelerate", "numpy", "scikit-learn",
            "faiss-cpu", "snakemake", "pillow", "lmms-eval")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
