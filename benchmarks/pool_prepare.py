"""Preparing a LLaVA-665k-sized pool: read, validate, add metadata, publish (the prepare_data rule's work).

Usage: python benchmarks/pool_prepare.py [--n 665298] [--files 5000] [--images exists] [--workdir /tmp/pool_bench]
Writes a synthetic pool with LLaVA-665k's record count and image-source mix (multi-turn records, some trailing
<image> tokens, repeated COCO ids, text-only records); its images point at --files real tiny JPEGs. Prints the
wall time, validation's own timings, and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

from PIL import Image

from selectbench.data.prepare import prepare

# (source, image path pattern, records): LLaVA-665k's counts (../docs: data.md)
MIX = [("coco", "coco/train2017/{:012d}.jpg", 364100), ("vg", "vg/VG_100K/{}.jpg", 86417),
       ("gqa", "gqa/images/{}.jpg", 72140), ("ocr_vqa", "ocr_vqa/images/{}.jpg", 80000),
       ("textvqa", "textvqa/train_images/{:016x}.jpg", 21953), ("text", None, 40688)]
WORDS = "the a man woman dog cat red blue sitting on table picture what is in image how many there are".split()


def write_pool(root: Path, n: int, n_files: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    scale = n / sum(count for _, _, count in MIX)
    per_source = max(1, n_files // (len(MIX) - 1))
    files = {}
    for source, pattern, _ in MIX:
        if pattern is None:
            continue
        files[source] = [pattern.format(i + 1) for i in range(per_source)]
        for rel in files[source]:
            path = root / "images" / rel
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 12), (rng.randrange(256), 0, 0)).save(path, "JPEG")

    def sentence(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    records = []
    for source, pattern, count in MIX:
        for i in range(round(count * scale)):
            conv = []
            for turn in range(rng.choice([1, 1, 2, 3, 5, 8])):
                question = sentence(rng.randint(5, 25))
                if turn == 0 and pattern is not None:
                    question = "<image>\n" + question if rng.random() > 0.02 else question + "\n<image>"
                conv += [{"from": "human", "value": question}, {"from": "gpt", "value": sentence(rng.randint(1, 60))}]
            if pattern is None:
                records.append({"id": f"sg_{i}", "conversations": conv})
            else:
                image = rng.choice(files[source])
                rid = Path(image).stem if source != "coco" or rng.random() < 0.7 else str(i)
                records.append({"id": rid, "image": image, "conversations": conv})
    rng.shuffle(records)
    path = root / "pool.json"
    path.write_text(json.dumps(records))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=665298)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--images", choices=["none", "exists", "open"], default="exists")
    parser.add_argument("--workdir", default="/tmp/pool_bench")
    a = parser.parse_args()
    root = Path(a.workdir)
    pool = write_pool(root, a.n, a.files)
    cfg = {"source": "llava665k", "pool": str(pool), "image_root": str(root / "images"), "benchmarks": ["pope"],
           "validation": {"duplicate_ids": "allow", "broken_records": "drop", "images": a.images}}
    start = time.perf_counter()
    prepare(cfg, root / "data")
    wall = time.perf_counter() - start
    report = json.loads((root / "data" / "validation.json").read_text())
    print(json.dumps({"records": report["total"], "kept": report["kept"], "images": a.images,
                      "wall_s": round(wall, 1), "validation_s": report["seconds"],
                      "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                      "ids_repeated": report["statistics"]["duplicate_ids"]["ids_repeated"],
                      "pool_mb": round((root / "data" / "pool.json").stat().st_size / 1e6)}))


if __name__ == "__main__":
    main()
