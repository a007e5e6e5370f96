"""The prepare-data step: build or read a dataset, validate it, and publish it atomically as a data folder
(manifest.json, pool.json, captions.json, eval/<benchmark>.json, validation.json, images or a link to them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from selectbench import registry
from selectbench.data import pools
from selectbench.io import atomic_dir
from selectbench.data.validate import PoolError, load_json_list, resolve_policy, validate_records


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prepare(dataset_cfg: dict[str, Any], out_dir: Path) -> dict:
    """Write the data folder for one dataset; nothing appears at out_dir unless every step succeeded."""
    with atomic_dir(Path(out_dir)) as tmp:
        manifest, pool = _build(dataset_cfg, tmp)
        if pool is None:  # a generated pool (embedded), already written
            pool = pools.read_plain(tmp / manifest["pool"])
            pool.file = Path(out_dir) / manifest["pool"]  # the name problems are reported under
        policy = resolve_policy(dataset_cfg.get("validation"), pools.POLICY_DEFAULTS.get(manifest["source"]))
        image_root = (tmp / manifest["image_root"]).resolve()  # through the link: messages name the real files
        rows, report = validate_records(pool.records, image_root, policy, file=pool.file,
                                        sources=pool.sources, extra=pool.problems, statistics=pool.statistics)
        if pool.metadata_fields or len(rows) != len(pool.records):  # metadata added, or policy "drop" dropped some
            pools.write_json_records(tmp / manifest["pool"], pools.publish_records(pool, rows))
        (tmp / "validation.json").write_text(json.dumps(report.as_dict(), indent=1))
        manifest["validation_report"] = "validation.json"
        manifest["metadata_fields"] = list(pool.metadata_fields)
        manifest["pool_size"] = len(rows)
        manifest["pool_sha256"] = sha256_file(tmp / manifest["pool"])
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _build(cfg: dict[str, Any], tmp: Path) -> tuple[dict, pools.SourcePool | None]:
    """Write what the dataset needs under tmp, by its source (selectbench.registry)."""
    return registry.load("source", cfg["source"], "source")(cfg, tmp)


def llava665k(cfg: dict[str, Any], tmp: Path) -> tuple[dict, pools.SourcePool]:
    return _link_files(cfg, tmp, "llava665k"), pools.read_llava665k(Path(cfg["pool"]))


def vision_flan(cfg: dict[str, Any], tmp: Path) -> tuple[dict, pools.SourcePool]:
    return _link_files(cfg, tmp, "vision_flan"), pools.read_vision_flan(Path(cfg["pool"]))


def _link_files(cfg: dict[str, Any], tmp: Path, source: str) -> dict:
    """A pool on disk: link the image root, copy captions and evaluation sets (the pool is written after
    validation)."""
    image_root = Path(cfg["image_root"])
    if not image_root.is_dir():
        raise FileNotFoundError(f"{image_root}: image_root is not a folder")
    (tmp / "images").symlink_to(image_root.resolve(), target_is_directory=True)
    manifest = {"source": source, "source_file": str(Path(cfg["pool"]).resolve()),
                "source_sha256": sha256_file(Path(cfg["pool"])), "pool": "pool.json", "image_root": "images",
                "eval": {}}
    if cfg.get("captions"):
        shutil.copyfile(cfg["captions"], tmp / "captions.json")
        manifest["captions"] = "captions.json"
    eval_dir = cfg.get("eval_dir")
    if eval_dir:
        (tmp / "eval").mkdir()
        for name in cfg["benchmarks"]:
            shutil.copyfile(Path(eval_dir) / f"{name}.json", tmp / "eval" / f"{name}.json")
            manifest["eval"][name] = f"eval/{name}.json"
    if cfg.get("task_validation"):
        manifest.update(_link_task_validation(cfg["task_validation"], cfg["benchmarks"], tmp))
    return manifest


def _link_task_validation(cfg: dict[str, Any], benchmarks: list[str], tmp: Path) -> dict:
    """Few task validation examples for task-aware methods (LESS): one LLaVA-format <task>.json per task in
    cfg["dir"], images under cfg["image_root"]; every record must pass the pool's record checks (any problem
    stops here, naming the file, the row and the id)."""
    root = Path(cfg["image_root"])
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: task_validation.image_root is not a folder")
    (tmp / "task_validation_images").symlink_to(root.resolve(), target_is_directory=True)
    (tmp / "task_validation").mkdir()
    files = {}
    for task in cfg.get("tasks") or benchmarks:
        src = Path(cfg["dir"]) / f"{task}.json"
        records = load_json_list(src)
        if not records:
            raise PoolError(f"{src}: no validation example for task {task!r}")
        validate_records(records, root, {"broken_records": "fail", "duplicate_ids": "allow"}, file=src)
        shutil.copyfile(src, tmp / "task_validation" / f"{task}.json")
        files[task] = f"task_validation/{task}.json"
    return {"task_validation": files, "task_validation_image_root": "task_validation_images"}
