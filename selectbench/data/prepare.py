"""The prepare-data step: build or read a dataset, validate it, and publish it atomically as a data folder
(manifest.json, pool.json, captions.json, eval/<benchmark>.json, validation.json, images or a link to them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

from selectbench.data.validate import load_json_list, validate_pool


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

    def vision_pretrain(self) -> list[dict] | None:
        """Labelled images {image, cells} for pretraining a from-scratch vision tower (embedded data only)."""
        name = self.manifest.get("vision_pretrain")
        return json.loads((self.path / name).read_text()) if name else None

    def eval_items(self, benchmark: str) -> list[dict]:
        return json.loads((self.path / self.manifest["eval"][benchmark]).read_text())

    def pool_hash(self) -> str:
        return self.manifest["pool_sha256"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(dataset_cfg: dict[str, Any], out_dir: Path) -> dict:
    """Write the data folder for one dataset; nothing appears at out_dir unless every step succeeded."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        manifest = _build(dataset_cfg, tmp)
        records, report = validate_pool(tmp / manifest["pool"], tmp / manifest["image_root"],
                                        dataset_cfg.get("validation", {}))
        if report.kept != report.total:  # policy "drop": publish the cleaned pool, keep the report
            (tmp / manifest["pool"]).write_text(json.dumps(records, separators=(",", ":")))
        (tmp / "validation.json").write_text(json.dumps(report.as_dict(), indent=1))
        manifest["pool_size"] = len(records)
        manifest["pool_sha256"] = sha256_file(tmp / manifest["pool"])
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _build(cfg: dict[str, Any], tmp: Path) -> dict:
    source = cfg["source"]
    if source == "embedded":
        from selectbench.data.embedded import write_embedded

        return write_embedded(tmp, cfg["embedded"], cfg["benchmarks"])
    if source == "llava":
        return _link_llava(cfg, tmp)
    raise ValueError(f"unknown dataset source {source!r}")


def _link_llava(cfg: dict[str, Any], tmp: Path) -> dict:
    """A pool in LLaVA-665k format on disk: copy the JSON, link the image root and the evaluation sets."""
    pool = Path(cfg["pool"])
    load_json_list(pool)  # fail early, naming the file, on malformed JSON
    shutil.copyfile(pool, tmp / "pool.json")
    (tmp / "images").symlink_to(Path(cfg["image_root"]).resolve(), target_is_directory=True)
    manifest = {"source": "llava", "pool": "pool.json", "image_root": "images", "eval": {}}
    if cfg.get("captions"):
        shutil.copyfile(cfg["captions"], tmp / "captions.json")
        manifest["captions"] = "captions.json"
    eval_dir = cfg.get("eval_dir")
    if eval_dir:
        (tmp / "eval").mkdir()
        for name in cfg["benchmarks"]:
            shutil.copyfile(Path(eval_dir) / f"{name}.json", tmp / "eval" / f"{name}.json")
            manifest["eval"][name] = f"eval/{name}.json"
    return manifest
