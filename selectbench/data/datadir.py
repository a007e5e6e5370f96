"""Read access to a prepared data folder (what the prepare step publishes)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path


class DataDir:
    """Read access to a prepared data folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest = json.loads((self.path / "manifest.json").read_text())

    @property
    def image_root(self) -> Path:
        return self.path / self.manifest["image_root"]

    @cached_property
    def pool(self) -> list[dict]:
        return json.loads((self.path / self.manifest["pool"]).read_text())

    def captions(self) -> list[dict]:
        return json.loads((self.path / self.manifest["captions"]).read_text())

    def eval_items(self, benchmark: str) -> list[dict]:
        return json.loads((self.path / self.manifest["eval"][benchmark]).read_text())

    def validation_tasks(self) -> list[str]:
        """Benchmarks with task validation examples (few, LLaVA format, disjoint from the evaluation sets);
        only task-aware methods read them."""
        return list(self.manifest.get("task_validation", {}))

    def validation_items(self, task: str) -> list[dict]:
        files = self.manifest.get("task_validation", {})
        if task not in files:
            raise KeyError(f"{self.path / 'manifest.json'}: no task validation set for {task!r} (has {sorted(files)})")
        return json.loads((self.path / files[task]).read_text())

    @property
    def validation_image_root(self) -> Path:
        """Where validation images live: their own root where the manifest names one, else the pool's."""
        return self.path / self.manifest.get("task_validation_image_root", self.manifest["image_root"])

    def pool_hash(self) -> str:
        return self.manifest["pool_sha256"]
