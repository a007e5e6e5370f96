"""Readers for the real instruction-tuning pools, the metadata every published record gains, and subsets exported
as records (../docs: data.md).

LLaVA-665k (llava_v1_5_mix665k.json): a JSON list of {id, image?, conversations, …}; image paths are relative to one
root and their folder names the source (coco/train2017, gqa/images, ocr_vqa/images, textvqa/train_images,
vg/VG_100K, vg/VG_100K_2); records without an image (ShareGPT) are "text".

Vision-Flan (191-task, ≤1k per task: annotation_191-task_1k.json with the images in images_191task_1k/): the same
LLaVA-style records plus a `task_name` field ("PACS+guitar_image_category_classification", "VQA_counting", …), and
`image` is a flat file name that starts with the task name and an underscore
("PACS+guitar_image_category_classification_830_n03272010_10795-5.png"). The task is read from `task_name`; a
record without it gets the longest task name (among those the file's other records carry) that starts its image's
file name; a record with neither is broken (no_task). The id is not used: it is not unique and carries no task.
A record whose image name does not start with its task_name is counted (statistic task_image_mismatch), not dropped.

Published records keep every original field, in order, and gain: row (index in the source file), source (image
source or Vision-Flan task), task (Vision-Flan), sha (record_sha: 16 hex digits over conversations + image). The
manifest lists these fields (metadata_fields), so export_subset can give back the records as they were.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence

from selectbench.io import atomic_file
from selectbench.data.validate import MAX_EXAMPLES, PoolError, Problem, load_json, load_json_list

IMAGE_SOURCES_665K = (("coco/train2017/", "coco"), ("gqa/images/", "gqa"), ("ocr_vqa/images/", "ocr_vqa"),
                      ("textvqa/train_images/", "textvqa"), ("vg/VG_100K/", "vg"), ("vg/VG_100K_2/", "vg"))
TEXT_ONLY = "text"
OTHER = "other"
METADATA_665K = ("row", "source", "sha")
METADATA_VISION_FLAN = ("row", "source", "task", "sha")
# validation defaults per source, under what the config says: real pools repeat ids by construction
POLICY_DEFAULTS = {"llava665k": {"duplicate_ids": "allow", "images": "exists"},
                   "vision_flan": {"duplicate_ids": "allow", "images": "exists"}}


@dataclass
class SourcePool:
    """A pool as read from its source file, before validation."""

    file: Path
    records: list
    metadata_fields: tuple[str, ...] = ()
    sources: list[str] | None = None           # per row: image source or task
    tasks: list[str | None] | None = None      # per row (Vision-Flan)
    problems: dict[int, list[Problem]] = field(default_factory=dict)  # per row, found by the reader
    statistics: dict[str, Any] = field(default_factory=dict)


def image_source_665k(record: object) -> str:
    """coco / gqa / ocr_vqa / textvqa / vg from the image folder, text without an image, other for anything else."""
    if not isinstance(record, dict) or "image" not in record:
        return TEXT_ONLY
    image = record["image"]
    if isinstance(image, str):
        for prefix, source in IMAGE_SOURCES_665K:
            if image.startswith(prefix):
                return source
    return OTHER


def record_sha(record: dict) -> str:
    """Short content hash of a record's conversations and image path (blake2b-64 over canonical JSON)."""
    payload = json.dumps([record.get("conversations"), record.get("image")], sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(payload.encode("ascii"), digest_size=8).hexdigest()


def _examples(file: Path, records: list, rows: Iterable[int], **extra: Callable[[int], Any]) -> list[dict]:
    out = []
    for row in rows:
        rid = records[row].get("id") if isinstance(records[row], dict) else None
        out.append({"file": str(file), "row": row, "id": rid if isinstance(rid, (str, int)) else repr(rid),
                    **{k: f(row) for k, f in extra.items()}})
        if len(out) == MAX_EXAMPLES:
            break
    return out


def _check_metadata_clash(file: Path, records: list, fields: Sequence[str]) -> None:
    for row, record in enumerate(records):
        if isinstance(record, dict):
            clash = [f for f in fields if f in record]
            if clash:
                raise PoolError(f"{file}: record {row} (id {record.get('id')!r}): already has field(s) {clash}, "
                                f"which the published pool adds as metadata")


def read_plain(path: Path) -> SourcePool:
    """A LLaVA-format JSON list as it is (no metadata): the embedded pool."""
    return SourcePool(file=Path(path), records=load_json_list(path))


def read_llava665k(path: Path) -> SourcePool:
    """LLaVA-665k (or any pool in its format): records and their image source."""
    path = Path(path)
    records = load_json_list(path)
    _check_metadata_clash(path, records, METADATA_665K)
    sources = [image_source_665k(r) for r in records]
    other = [row for row, s in enumerate(sources) if s == OTHER]
    stats = {"unknown_image_source": {
        "count": len(other), "note": "image outside " + ", ".join(p for p, _ in IMAGE_SOURCES_665K),
        "first": _examples(path, records, other, image=lambda r: records[r].get("image"))}}
    return SourcePool(file=path, records=records, metadata_fields=METADATA_665K, sources=sources, statistics=stats)


def vision_flan_task(record: dict, known_longest_first: Sequence[str]) -> tuple[str | None, str | None]:
    """(task, how): how is "task_name" (the record's field) or "image" (its file name's prefix); (None, None)."""
    name = record.get("task_name")
    if isinstance(name, str) and name.strip():
        return name, "task_name"
    image = record.get("image")
    if isinstance(image, str):
        base = PurePosixPath(image).name
        for task in known_longest_first:
            if base.startswith(task + "_"):
                return task, "image"
    return None, None


def read_vision_flan(path: Path) -> SourcePool:
    """Vision-Flan (191-task release): records, the task of each (see the module docstring) and its checks."""
    path = Path(path)
    records = load_json_list(path)
    _check_metadata_clash(path, records, METADATA_VISION_FLAN)
    known = sorted({r["task_name"] for r in records if isinstance(r, dict) and isinstance(r.get("task_name"), str)
                    and r["task_name"].strip()}, key=len, reverse=True)
    if records and not known:
        raise PoolError(f"{path}: no record has a task_name field, so Vision-Flan tasks cannot be recovered "
                        f"(expected the records of annotation_191-task_1k.json: id, image, conversations, task_name)")
    tasks: list[str | None] = []
    how_counts = {"task_name": 0, "image": 0}
    problems: dict[int, list[Problem]] = {}
    mismatch: list[int] = []
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            tasks.append(None)
            continue
        task, how = vision_flan_task(record, known)
        tasks.append(task)
        if task is None:
            problems[row] = [("no_task", "no task_name field and the image file name starts with no known task")]
            continue
        how_counts[how] += 1
        image = record.get("image")
        if how == "task_name" and isinstance(image, str) and not PurePosixPath(image).name.startswith(task + "_"):
            mismatch.append(row)
    stats = {
        "tasks": len({t for t in tasks if t is not None}), "task_from": how_counts,
        "task_image_mismatch": {"count": len(mismatch), "note": "image file name does not start with task_name + '_'",
                                "first": _examples(path, records, mismatch, task=lambda r: tasks[r],
                                                   image=lambda r: records[r].get("image"))}}
    sources = [t if t is not None else "unknown" for t in tasks]
    return SourcePool(file=path, records=records, metadata_fields=METADATA_VISION_FLAN, sources=sources, tasks=tasks,
                      problems=problems, statistics=stats)





def publish_records(pool: SourcePool, rows: Sequence[int]) -> list[dict]:
    """The kept records with their metadata added (in place: a 665k pool is not copied)."""
    out = []
    for row in rows:
        record = pool.records[row]
        if pool.metadata_fields:
            record["row"] = row
            record["source"] = pool.sources[row]
            if pool.tasks is not None:
                record["task"] = pool.tasks[row]
            record["sha"] = record_sha(record)
        out.append(record)
    return out


def original_record(record: dict, metadata_fields: Sequence[str]) -> dict:
    """A published record without the metadata it gained: the record as its source file had it."""
    return {k: v for k, v in record.items() if k not in metadata_fields}


def write_json_records(path: Path, records: Iterable[Any]) -> None:
    """A JSON list, one record per line, written to a temporary file and renamed (never half-written)."""
    with atomic_file(Path(path)) as tmp, open(tmp, "w", encoding="ascii") as fh:
        fh.write("[")
        for i, record in enumerate(records):
            fh.write(("," if i else "") + "\n" + json.dumps(record, separators=(",", ":")))
        fh.write("\n]\n")


def export_subset(data_dir: Path, subset_json: Path, out_json: Path) -> dict:
    """Write the records a subset selects ({rows, ids} as the select step writes it, rows into the data folder's
    pool.json) as a LLaVA-format JSON list: original fields and ids, metadata removed, in row order, atomically.
    Checks that the subset belongs to this pool (its ids, and the pool hash in its .meta.json sidecar if any)."""
    from selectbench.data.datadir import DataDir

    data = DataDir(Path(data_dir))
    rows = read_subset(data, Path(subset_json))
    pool = data.pool
    fields = data.manifest.get("metadata_fields", [])
    write_json_records(Path(out_json), (original_record(pool[r], fields) for r in sorted(rows)))
    return {"out": str(out_json), "records": len(rows), "text_only": sum("image" not in pool[r] for r in rows)}


def read_subset(data, subset_json: Path) -> list[int]:
    """The rows of a subset file ({rows, ids} as the select step writes them), checked against the data folder's
    pool: integer rows inside it, none repeated, the ids the rows have there, and the pool hash of its .meta.json
    sidecar; PoolError naming the file otherwise (a hand-edited, corrupt or foreign subset)."""
    subset = load_json(subset_json, dict, "a JSON object")
    rows, ids = subset.get("rows"), subset.get("ids")
    pool = data.pool
    if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in rows):
        raise PoolError(f"{subset_json}: 'rows' must be a list of row indices into {data.path / 'pool.json'}")
    bad = [r for r in rows if not 0 <= r < len(pool)]
    if bad:
        raise PoolError(f"{subset_json}: rows {bad[:5]} outside the pool of {len(pool)} records in {data.path}")
    seen: set[int] = set()
    repeated = [r for r in rows if r in seen or seen.add(r)]
    if repeated:
        raise PoolError(f"{subset_json}: row {repeated[0]} repeated ({len(repeated)} repeats): a subset selects each "
                        "example once")
    if ids is not None:
        if len(ids) != len(rows):
            raise PoolError(f"{subset_json}: {len(ids)} ids for {len(rows)} rows")
        for row, rid in zip(rows, ids):
            if pool[row].get("id") != rid:
                raise PoolError(f"{subset_json}: row {row} is id {pool[row].get('id')!r} in {data.path}, the subset "
                                f"says {rid!r}: it was not selected from this pool")
    meta_path = subset_json.with_suffix(".meta.json")
    if meta_path.exists():
        expected = load_json(meta_path, dict, "a JSON object").get("pool_sha256")
        if expected and expected != data.pool_hash():
            raise PoolError(f"{meta_path}: pool_sha256 {expected[:12]}… differs from {data.path}'s "
                            f"{data.pool_hash()[:12]}…: the subset was selected from another pool")
    return rows
