"""Read access to a prepared data folder (what the prepare step publishes)."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

from selectbench.data.validate import PoolError, load_json, load_json_list


class DataDir:
    """Read access to a prepared data folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # named on error: a data folder is read by every later job, far from the prepare step that wrote it
        self.manifest = load_json(self.path / "manifest.json", dict, "a JSON object (the data folder's manifest)")

    @property
    def image_root(self) -> Path:
        return self.path / self.manifest["image_root"]

    @cached_property
    def pool(self) -> list[dict]:
        """The published records, checked against the hash the prepare step recorded: a pool.json edited after
        publishing would otherwise mix into subsets whose sidecars name the old pool."""
        path = self.path / self.manifest["pool"]
        raw = path.read_bytes()
        expected = self.manifest.get("pool_sha256")
        if expected and hashlib.sha256(raw).hexdigest() != expected:
            raise PoolError(f"{path}: changed since the prepare step published it (sha256 differs from "
                            f"{self.path / 'manifest.json'}); rerun it (snakemake -R prepare_data) instead of editing "
                            "a published pool")
        return json.loads(raw)

    def captions(self) -> list[dict]:
        return load_json_list(self.path / self.manifest["captions"])

    def eval_items(self, benchmark: str) -> list[dict]:
        return load_json_list(self.path / self.manifest["eval"][benchmark])

    def validation_tasks(self) -> list[str]:
        """Benchmarks with task validation examples (few, LLaVA format, disjoint from the evaluation sets);
        only task-aware methods read them."""
        return list(self.manifest.get("task_validation", {}))

    def validation_items(self, task: str) -> list[dict]:
        files = self.manifest.get("task_validation", {})
        if task not in files:
            raise KeyError(f"{self.path / 'manifest.json'}: no task validation set for {task!r} (has {sorted(files)})")
        return load_json_list(self.path / files[task])

    @property
    def validation_image_root(self) -> Path:
        """Where validation images live: their own root where the manifest names one, else the pool's."""
        return self.path / self.manifest.get("task_validation_image_root", self.manifest["image_root"])

    def pool_hash(self) -> str:
        return self.manifest["pool_sha256"]
