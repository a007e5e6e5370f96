"""A small LLaVA-format pool on disk (the layout of LLaVA-665k: one image root, source folders), built from
nothing in milliseconds, so that every bad-input case breaks one thing of an otherwise good pool."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

IMAGES = ["coco/train2017/000000000009.jpg", "gqa/images/2354786.jpg", "vg/VG_100K/2356347.jpg",
          "textvqa/train_images/0054c91397f2fe05.jpg"]


def turns(*values):
    return [{"from": "human" if k % 2 == 0 else "gpt", "value": v} for k, v in enumerate(values)]


# row 0-3 have an image each, row 4 is text-only, row 5 is multi-turn; every id distinct
RECORDS = [
    {"id": "coco-9", "image": IMAGES[0], "conversations": turns("<image>\nWhat is on the plate?", "Broccoli.")},
    {"id": "gqa-1", "image": IMAGES[1], "conversations": turns("<image>\nIs the sky dark?", "Yes")},
    {"id": "vg-2", "image": IMAGES[2], "conversations": turns("<image>\nWhat is red?", "A car.")},
    {"id": "tvqa-3", "image": IMAGES[3], "conversations": turns("<image>\nWhat does it say?", "stop")},
    {"id": "share-4", "conversations": turns("Write a haiku about rain.", "Soft rain on the roof")},
    {"id": "coco-5", "image": IMAGES[0], "conversations": turns("<image>\nA fork?", "No", "Colour?", "White")},
]


class Pool:
    """A copy of RECORDS and the image root; write() puts the records (or raw bytes) in the pool file."""

    def __init__(self, root: Path):
        self.root = root
        self.images = root / "images"
        self.file = root / "llava_v1_5_mix665k.json"
        self.records = copy.deepcopy(RECORDS)
        for i, rel in enumerate(IMAGES):
            (self.images / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 6), (40 * i, 90, 200)).save(self.images / rel, "JPEG")

    def write(self, raw: bytes | None = None) -> Path:
        self.file.write_bytes(raw if raw is not None else json.dumps(self.records).encode())
        return self.file

    def config(self, source: str = "llava665k", raw: bytes | None = None, **validation) -> dict:
        """A dataset section naming the pool file (written now: the records, or `raw`), strict unless
        `validation` relaxes it."""
        policy = {"broken_records": "fail", "duplicate_ids": "fail", "images": "open", **validation}
        return {"source": source, "pool": str(self.write(raw)), "image_root": str(self.images),
                "benchmarks": ["pope"], "validation": policy}


@pytest.fixture
def pool(tmp_path) -> Pool:
    return Pool(tmp_path / "src")
