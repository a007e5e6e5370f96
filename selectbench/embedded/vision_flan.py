"""The "embedded_vision_flan" data source: the digits world written as Vision-Flan's release is laid out, then read
by the Vision-Flan reader paper scale uses (selectbench.data.prepare.vision_flan), so every later rule sees a pool
that came through that reader: task per record, metadata, validation, duplicate ids allowed.

The release's layout (selectbench/data/pools.py): one annotation file of single-turn LLaVA-style records, each with
a task_name and an image, every image in one flat folder under a name that starts with its task and "_". Here a
task is a question family asked under one instruction style, as Vision-Flan gives each of its 191 tasks an
instruction of its own; ids count within a task, so they repeat across tasks as the release's do. The raw files
stay in the data folder (vision_flan/), the evaluation sets, captions and scene corpus beside the pool's images.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from selectbench.data import prepare, pools
from selectbench.embedded import questions as Q
from selectbench.embedded.dataset import _ImageWriter, family_distribution, scene_for, write_embedded
from selectbench.embedded.scenes import DigitBank

RAW = "vision_flan"  # the release's files (annotation, flat image folder) inside the data folder
# Vision-Flan's instructions are written per task; these styles make several tasks of each question family.
INSTRUCTIONS = {
    "plain": "{question}",
    "grid": "The image shows handwritten digits on a 3x3 grid. {question}",
    "task": "In this task, you are given an image of handwritten digits. Answer the question about it.\n"
            "Question: {question}",
    "short": "{question}\nAnswer as briefly as the question allows.",
}


def task_name(family: str, style: str) -> str:
    """Vision-Flan's "<dataset>+<task>" naming: "digits+counting_grid"."""
    return f"digits+{family}_{style}"


def build_pool(cfg: dict[str, Any], rng: np.random.Generator, image_root: Path, bank: DigitBank) -> list[dict]:
    """Single-turn records in Vision-Flan's layout (id, image, conversations, task_name), images flat in the
    root as "<task>_<n>.png"; families drawn as the embedded pool draws them, repeats under a new id."""
    families, weights = family_distribution(cfg)
    styles = list(cfg.get("instruction_styles", INSTRUCTIONS))
    images = _ImageWriter(image_root, "", bank)
    per_task: Counter[str] = Counter()
    records: list[dict] = []
    for _ in range(cfg["pool_size"]):
        if records and rng.random() < cfg["duplicate_fraction"]:
            source = records[int(rng.integers(len(records)))]
            record = {**json.loads(json.dumps(source)), "id": str(per_task[source["task_name"]])}
        else:
            family = str(rng.choice(families, p=weights))
            scene = scene_for(family, rng, bank)
            qa = Q.ask(family, rng, scene) or Q.identify(rng, scene)
            style = styles[int(rng.integers(len(styles)))]
            task = task_name(qa.family, style)
            instruction = INSTRUCTIONS[style].format(question=qa.question)
            record = {"id": str(per_task[task]), "image": images(scene, prefix=f"{task}_"),
                      "conversations": [{"from": "human", "value": "<image>\n" + instruction},
                                        {"from": "gpt", "value": qa.answer}],
                      "task_name": task}
        per_task[record["task_name"]] += 1
        records.append(record)
    return records


def generate(dataset_cfg: dict[str, Any], tmp: Path) -> tuple[dict, pools.SourcePool]:
    """Write the release under tmp/vision_flan/ and prepare it as a `vision_flan` dataset (the evaluation sets,
    captions and task validation sets go the same way as a real dataset's); the manifest also names the embedded
    files the digits recipe reads."""
    cfg, benchmarks = dataset_cfg["embedded_vision_flan"], dataset_cfg["benchmarks"]
    raw = tmp / RAW
    written = write_embedded(raw, cfg, benchmarks, build_pool)
    reader_cfg = {"pool": str(raw / written["pool"]), "image_root": str(raw / written["image_root"]),
                  "captions": str(raw / written["captions"]), "eval_dir": str(raw / "eval"),
                  "benchmarks": benchmarks}
    if written["task_validation"]:
        reader_cfg["task_validation"] = {"dir": str(raw / "task_validation"), "tasks": list(written["task_validation"]),
                                         "image_root": str(raw / written["image_root"])}
    manifest, pool = prepare.vision_flan(reader_cfg, tmp)
    _relative_links(tmp)
    pool.file = Path(RAW) / written["pool"]  # the name problems are reported under, inside the data folder
    manifest.update(source_file=str(pool.file), generator="embedded_vision_flan",
                    vision_pretrain=f"{RAW}/{written['vision_pretrain']}",
                    scene_corpus=[f"{RAW}/{part}" for part in written["scene_corpus"]], positions=written["positions"])
    return manifest, pool


def _relative_links(tmp: Path) -> None:
    """The reader links the image roots by absolute path; these lie inside the folder that is renamed when
    published, so they are made relative to it."""
    for link in tmp.iterdir():
        if link.is_symlink():
            target = Path(os.readlink(link))
            link.unlink()
            link.symlink_to(os.path.relpath(target, tmp.resolve()), target_is_directory=True)
