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


@lru_cache(maxsize=1)
def code_version() -> str:
    """The selectbench code that ran: its git commit, marked when the checkout has uncommitted changes (a number
    made by edited code must say so), or the package version where the code is not a git checkout."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(["git", *args], capture_output=True, text=True, timeout=20, cwd=here)
        except (OSError, subprocess.SubprocessError):
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return f"selectbench {package_versions()['selectbench']} (not a git checkout)"
    dirty = git("status", "--porcelain", "--", ".", "../methods", "../rules", "../Snakefile", "../config")
    return commit + (" + uncommitted changes" if dirty else "")


def source_digest(*packages: str) -> str:
    """sha256 over the source of selectbench subpackages (e.g. "training", "models"): what resumable partial work
    records, so that work done by other code is recomputed, not resumed."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).glob("*.py")):
            digest.update(f"{package}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def machine() -> str:
    """Where the numbers were made (floating-point sums differ between CPUs)."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu})"


def provenance(**extra) -> dict:
    """What every table and sidecar records about how it was made: code, libraries, machine, plus the caller's
    (config hash, pool sha256, protocols)."""
    return {"code": code_version(), **extra, "versions": package_versions(), "machine": machine()}
