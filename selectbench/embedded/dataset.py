"""The embedded default dataset: a LLaVA-665k-format pool and six benchmark-shaped evaluation sets built from
real handwritten digits that ship inside scikit-learn. Nothing is downloaded; everything is seeded."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from selectbench.embedded import questions as Q
from selectbench.embedded.scene_corpus import build_scene_corpus
from selectbench.embedded.scenes import (
    CONFUSABLE, NUMBER_WORDS, POSITIONS, DigitBank, Scene, load_digit_banks, random_scene, render,
)

class _ImageWriter:
    """Renders scenes to PNG files under images/<split>/ (the root itself for split "") and returns their paths
    relative to the image root; keeps a digest of every image's pixels (so later splits can avoid repeating one).
    A prefix starts the file name: Vision-Flan names every image after its task."""

    def __init__(self, root: Path, split: str, bank: DigitBank):
        self.root, self.split, self.bank = root, split, bank
        (root / split).mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.digests: set[str] = set()

    def __call__(self, scene: Scene, prefix: str = "") -> str:
        return self.save(render(scene, self.bank), prefix)

    def save(self, pixels: np.ndarray, prefix: str = "") -> str:
        rel = str(PurePosixPath(self.split, f"{prefix}{self.count:06d}.png"))
        Image.fromarray(pixels).save(self.root / rel)
        self.digests.add(_digest(pixels))
        self.count += 1
        return rel


class _PendingImages:
    """Renders scenes in memory under provisional names; only the images of items finally kept are written."""

    def __init__(self, bank: DigitBank):
        self.bank = bank
        self.pixels: dict[str, np.ndarray] = {}

    def __call__(self, scene: Scene) -> str:
        key = f"pending/{len(self.pixels)}"
        self.pixels[key] = render(scene, self.bank)
        return key


def _digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(pixels.tobytes()).hexdigest()


def scene_for(family: str, rng: np.random.Generator, bank: DigitBank) -> Scene:
    n = int(rng.integers(2, 6))
    if family == "reading":
        return random_scene(rng, bank, max(n, 3), full_row=int(rng.integers(3)))
    if family == "counting" and rng.random() < 0.5:
        return random_scene(rng, bank, n, allow_repeats=True)
    return random_scene(rng, bank, n)


def family_distribution(cfg: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """The families of family_weights in the config's order (draws depend on it) and their probabilities."""
    families = list(cfg["family_weights"])
    weights = np.array([cfg["family_weights"][f] for f in families], dtype=np.float64)
    return families, weights / weights.sum()


def build_pool(cfg: dict[str, Any], rng: np.random.Generator, images: _ImageWriter) -> list[dict]:
    """The instruction-tuning pool in LLaVA-665k's format, with uneven and redundant family proportions."""
    families, weights = family_distribution(cfg)
    records: list[dict] = []
    for i in tqdm(range(cfg["pool_size"]), desc="pool", mininterval=2):
        rid = f"digits-{i:06d}"
        if records and rng.random() < cfg["duplicate_fraction"]:
            # Redundancy on purpose: the same conversation about the same image again, under a new id.
            source = records[int(rng.integers(len(records)))]
            records.append({**json.loads(json.dumps(source)), "id": rid})
            continue
        if rng.random() < cfg["text_only_fraction"]:
            turns = [Q.text_only(rng) for _ in range(1 + int(rng.random() < cfg["multi_turn_fraction"]))]
            records.append({"id": rid, "conversations": _conversation(turns, with_image=False),
                            "family": "text_only"})
            continue
        family = str(rng.choice(families, p=weights))
        scene = scene_for(family, rng, images.bank)
        # Like LLaVA-665k's VQA sources, several questions about one image are packed into one record.
        low, high = cfg.get("questions_per_record", {}).get(family, [1, 1])
        turns = _distinct([Q.ask(family, rng, scene) for _ in range(int(rng.integers(low, high + 1)))])
        if rng.random() < cfg["multi_turn_fraction"]:
            for _ in range(int(rng.integers(1, 3))):
                extra = Q.ask(str(rng.choice(families, p=weights)), rng, scene)
                if extra is not None:
                    turns.append(extra)
        turns = _distinct(turns) or [Q.identify(rng, scene)]
        records.append({"id": rid, "image": images(scene), "conversations": _conversation(turns, with_image=True),
                        "family": family})
    return records


def _distinct(turns: list[Q.QA | None]) -> list[Q.QA]:
    """Drop unanswerable and repeated questions, keeping the first occurrence."""
    seen, out = set(), []
    for qa in turns:
        if qa is not None and qa.question not in seen:
            seen.add(qa.question)
            out.append(qa)
    return out


def _conversation(turns: list[Q.QA], with_image: bool) -> list[dict]:
    conv = []
    for k, qa in enumerate(turns):
        prompt = ("<image>\n" + qa.question) if (with_image and k == 0) else qa.question
        conv += [{"from": "human", "value": prompt}, {"from": "gpt", "value": qa.answer}]
    return conv



def build_captions(n: int, rng: np.random.Generator, images: _ImageWriter) -> tuple[list[dict], list[dict]]:
    """Stage-1 alignment data (LLaVA-558k's role): an image and a caption, in turn of three styles: the grid
    row by row ("4 - 8 / 5 - - / - 3 -"), a dense caption naming each digit's position, and the set of
    digits present in increasing order ("3, 4, 5, 8"). Also returns each image's per-cell labels (-1 = empty):
    the labelled set that pretrains the vision tower, CLIP's role, since no CLIP weights ship offline."""
    out, cells = [], []
    for i in tqdm(range(n), desc="captions", mininterval=2):
        scene = random_scene(rng, images.bank, int(rng.integers(1, 6)), allow_repeats=rng.random() < 0.3)
        style = list(Q.CAPTION_PROMPTS)[i % len(Q.CAPTION_PROMPTS)]
        text = {"grid": Q.caption, "set": Q.digit_set,
                "dense": lambda s: Q.description(rng, s).answer}[style](scene)
        image = images(scene)
        out.append({"id": f"caption-{i:06d}", "image": image, "conversations": [
            {"from": "human", "value": "<image>\n" + Q.CAPTION_PROMPTS[style]},
            {"from": "gpt", "value": text}]})
        cells.append({"image": image, "cells": list(scene.labels)})
    return out, cells


# ----------------------------------------------------------------------------------------------- evaluation
def _references(rng: np.random.Generator, answer: str, variants: list[str]) -> list[str]:
    """Ten human-style reference answers: mostly the answer, some equivalent spellings, a few disagreements."""
    refs = [answer] * 10
    n_var = int(rng.integers(0, 3))
    n_wrong = int(rng.integers(0, 3)) if variants else 0
    for k in range(n_var):
        if answer.isdigit() and len(answer) == 1:
            refs[k] = NUMBER_WORDS[int(answer)]
        elif answer in ("Yes", "No"):
            refs[k] = answer.lower()
    for k in range(n_wrong):
        refs[9 - k] = str(rng.choice(variants))
    return refs


def _pope(rng, bank, writer, n_images) -> list[dict]:
    """POPE: per image, 3 present and 3 absent digits for each negative-sampling split."""
    items: list[dict] = []
    weights = np.linspace(3.0, 1.0, 10)  # a skewed digit frequency so "popular" negatives mean something
    scenes = [random_scene(rng, bank, int(rng.integers(2, 5)), digit_weights=weights) for _ in range(n_images)]
    frequency = np.bincount([d for s in scenes for d in s.digits], minlength=10)
    popular_order = list(np.argsort(-frequency, kind="stable"))
    for scene in scenes:
        image = writer(scene)
        absent = [d for d in range(10) if d not in scene.labels]
        negatives = {
            "random": [int(d) for d in rng.permutation(absent)[:3]],
            "popular": [int(d) for d in popular_order if d in absent][:3],
            "adversarial": ([CONFUSABLE[d] for d in scene.digits if CONFUSABLE[d] in absent]
                            + [int(d) for d in rng.permutation(absent)])[:3],
        }
        positives = [int(d) for d in rng.permutation(scene.digits)[:3]]
        for split, negs in negatives.items():
            for digit, label in [(d, "yes") for d in positives] + [(d, "no") for d in dict.fromkeys(negs)]:
                items.append({"id": f"pope-{len(items):05d}", "image": image, "split": split,
                              "question": f"Is there a {digit} in the image?", "answer": label})
    return items


def _textvqa(rng, bank, writer, n) -> list[dict]:
    items = []
    for i in range(n):
        scene = random_scene(rng, bank, int(rng.integers(3, 7)), full_row=int(rng.integers(3)))
        qa = Q.reading(rng, scene)
        misreadings = [qa.answer[:-1], qa.answer[1:], qa.answer[0] + str(CONFUSABLE[int(qa.answer[1])]) + qa.answer[2:]]
        items.append({"id": f"textvqa-{i:05d}", "image": writer(scene), "question": qa.question,
                      "answers": _references(rng, qa.answer, misreadings)})
    return items


def _vqav2(rng, bank, writer, n) -> list[dict]:
    items = []
    kinds = ["identify", "presence", "counting"]
    for i in range(n):
        kind = kinds[i % 3]
        scene = random_scene(rng, bank, int(rng.integers(2, 6)), allow_repeats=kind == "counting" and rng.random() < 0.5)
        qa = Q.ask(kind, rng, scene)
        if kind == "presence":
            wrong = ["No" if qa.answer == "Yes" else "Yes"]
            answer_type = "yes/no"
        elif kind == "counting":
            wrong, answer_type = [str(int(qa.answer) + 1), str(max(0, int(qa.answer) - 1))], "number"
        else:
            wrong, answer_type = [str(CONFUSABLE[int(qa.answer)])], "other"
        items.append({"id": f"vqav2-{i:05d}", "image": writer(scene), "question": qa.question,
                      "answers": _references(rng, qa.answer, wrong), "answer_type": answer_type})
    return items


def _gqa(rng, bank, writer, n) -> list[dict]:
    """Relations (half: which digit is next to which; a quarter: is A left of B) and comparisons (which of
    two digits is larger), so that no answer prior does well: a blind guesser scores about 20."""
    items = []
    for i in range(n):
        kind = ("relation", "relation", "relation_yes_no", "compare")[i % 4]
        qa = None
        while qa is None:
            scene = random_scene(rng, bank, int(rng.integers(3, 6)))
            qa = Q.ask("relation" if kind.startswith("relation") else "compare", rng, scene)
            if qa is not None and (qa.answer in ("Yes", "No")) != (kind == "relation_yes_no"):
                qa = None  # resample until the question has the planned form
        items.append({"id": f"gqa-{i:05d}", "image": writer(scene), "question": qa.question, "answer": qa.answer,
                      "type": kind})
    return items


def _mmbench(rng, bank, writer, n) -> list[dict]:
    items = []
    for i in range(n):
        scene = random_scene(rng, bank, int(rng.integers(2, 6)))
        qa = Q.multiple_choice(rng, scene)
        items.append({"id": f"mmbench-{i:05d}", "image": writer(scene), "question": qa.extra["stem"],
                      "options": qa.extra["options"], "answer_index": qa.extra["answer_index"]})
    return items


def _mmvet(rng, bank, writer, n) -> list[dict]:
    items = []
    for i in range(n):
        scene = random_scene(rng, bank, int(rng.integers(1, 5)))
        qa = Q.description(rng, scene)
        items.append({"id": f"mmvet-{i:05d}", "image": writer(scene), "question": qa.question, "answer": qa.answer,
                      "facts": [[d, pos] for d, pos in qa.extra["facts"]], "count": qa.extra["count"]})
    return items


EVAL_BUILDERS: dict[str, Callable] = {
    "pope": _pope, "textvqa": _textvqa, "vqav2": _vqav2, "gqa": _gqa, "mmbench": _mmbench, "mmvet": _mmvet,
}


# ----------------------------------------------------------------------------------------------- validation
VALIDATION_SIZE = 8     # few-shot validation examples per benchmark (config embedded.validation_size)
VALIDATION_STREAM = 1   # its own RNG stream: the pool and the evaluation sets do not move when it changes


def validation_sizes(cfg: dict[str, Any], benchmarks: list[str]) -> dict[str, int]:
    """embedded.validation_size: one int for every benchmark or {benchmark: int}; default 8; 0 = none."""
    value = cfg.get("validation_size", VALIDATION_SIZE)
    sizes = {b: int(value.get(b, VALIDATION_SIZE) if isinstance(value, dict) else value) for b in benchmarks}
    bad = {b: n for b, n in sizes.items() if n < 0}
    if bad:
        raise ValueError(f"embedded.validation_size must be >= 0, got {bad}")
    return sizes


def validation_turn(benchmark: str, item: dict) -> tuple[str, str]:
    """An evaluation-shaped item as one (question, answer) turn, in the form the benchmark asks it and accepts
    it: MMBench's lettered options and answer, the majority reference of VQA-style items, POPE's label as the
    pool's Yes/No (the metric is case-insensitive)."""
    if benchmark == "mmbench":
        return Q.format_options(item["question"], item["options"]), Q.option_answer(item["options"],
                                                                                   item["answer_index"])
    answer = Counter(item["answers"]).most_common(1)[0][0] if "answers" in item else item["answer"]
    return item["question"], answer.capitalize() if benchmark == "pope" else answer


def build_validation(benchmark: str, size: int, rng: np.random.Generator, bank: DigitBank, writer: _ImageWriter,
                     avoid: set[str]) -> list[dict]:
    """`size` validation examples shaped like `benchmark`'s evaluation items (the same builder, its own
    draws), as LLaVA conversations on new held-out images; none shows an image whose pixels are in `avoid`
    (the evaluation images) and no (image, question) repeats."""
    pending = _PendingImages(bank)
    candidates, seen = [], set()
    for item in EVAL_BUILDERS[benchmark](rng, bank, pending, size):
        key = (_digest(pending.pixels[item["image"]]), item["question"])
        if key[0] not in avoid and key not in seen:
            seen.add(key)
            candidates.append(item)
    if benchmark == "pope":  # POPE is balanced yes/no by design; so is its validation set
        strata = [[i for i, it in enumerate(candidates) if it["answer"] == label] for label in ("yes", "no")]
        quotas = [size // 2, size - size // 2]
    else:
        strata, quotas = [list(range(len(candidates)))], [size]
    if any(len(stratum) < quota for stratum, quota in zip(strata, quotas)):
        raise ValueError(f"{benchmark}: too few validation candidates disjoint from the evaluation set "
                         f"({[len(s) for s in strata]} for {quotas})")
    chosen = np.sort(np.concatenate([rng.choice(np.array(stratum, dtype=np.int64), size=quota, replace=False)
                                     for stratum, quota in zip(strata, quotas)]))
    saved: dict[str, str] = {}
    records = []
    for k, index in enumerate(chosen):
        item = candidates[index]
        if item["image"] not in saved:
            saved[item["image"]] = writer.save(pending.pixels[item["image"]])
        question, answer = validation_turn(benchmark, item)
        records.append({"id": f"{benchmark}-val-{k:04d}", "image": saved[item["image"]],
                        "conversations": [{"from": "human", "value": "<image>\n" + question},
                                          {"from": "gpt", "value": answer}]})
    return records


# (settings, the dataset's RNG, image root, training digits) -> pool records, images written under the root
PoolBuilder = Callable[[dict[str, Any], np.random.Generator, Path, DigitBank], list[dict]]


def llava_pool(cfg: dict[str, Any], rng: np.random.Generator, image_root: Path, bank: DigitBank) -> list[dict]:
    """The embedded source's pool: LLaVA-665k's format, images under images/pool/."""
    return build_pool(cfg, rng, _ImageWriter(image_root, "pool", bank))


def generate(dataset_cfg: dict[str, Any], tmp: Path) -> tuple[dict, None]:
    """The "embedded" data source (selectbench.registry): the dataset generated under tmp."""
    return write_embedded(tmp, dataset_cfg["embedded"], dataset_cfg["benchmarks"]), None


def write_embedded(out_dir: Path, cfg: dict[str, Any], benchmarks: list[str],
                   pool_builder: PoolBuilder = llava_pool) -> dict:
    """Write pool.json (its records made by pool_builder), captions.json, eval/<benchmark>.json,
    task_validation/<benchmark>.json and images/ under out_dir; return the manifest (prepare writes it)."""
    out_dir = Path(out_dir)
    train_bank, held_out_bank = load_digit_banks(cfg["holdout_fraction"], cfg["seed"])
    image_root = out_dir / "images"
    rng = np.random.default_rng(cfg["seed"])
    pool = pool_builder(cfg, rng, image_root, train_bank)
    captions, cells = build_captions(cfg["caption_size"], rng, _ImageWriter(image_root, "captions", train_bank))
    (out_dir / "eval").mkdir(parents=True, exist_ok=True)
    eval_writer = _ImageWriter(image_root, "eval", held_out_bank)
    eval_files = {}
    for name in benchmarks:
        items = EVAL_BUILDERS[name](rng, held_out_bank, eval_writer, cfg["eval_sizes"][name])
        eval_files[name] = f"eval/{name}.json"
        _dump(out_dir / eval_files[name], items)
    validation_files = _write_validation(out_dir, cfg, benchmarks, held_out_bank, eval_writer.digests)
    _dump(out_dir / "pool.json", pool)
    _dump(out_dir / "captions.json", captions)
    _dump(out_dir / "vision_pretrain.json", cells)
    scene_corpus = _write_scene_corpus(out_dir, cfg, train_bank)
    manifest = {"source": "embedded", "pool": "pool.json", "captions": "captions.json", "image_root": "images",
                "vision_pretrain": "vision_pretrain.json", "scene_corpus": scene_corpus,
                "eval": eval_files, "task_validation": validation_files, "positions": list(POSITIONS)}
    return manifest


def _write_validation(out_dir: Path, cfg: dict[str, Any], benchmarks: list[str], bank: DigitBank,
                      eval_digests: set[str]) -> dict[str, str]:
    """task_validation/<benchmark>.json for every benchmark with a non-zero validation size."""
    rng = np.random.default_rng([cfg["seed"], VALIDATION_STREAM])
    writer = _ImageWriter(out_dir / "images", "task_validation", bank)
    (out_dir / "task_validation").mkdir(parents=True, exist_ok=True)
    files = {}
    for name, size in validation_sizes(cfg, benchmarks).items():
        if size:
            files[name] = f"task_validation/{name}.json"
            _dump(out_dir / files[name], build_validation(name, size, rng, bank, writer, eval_digests))
    return files


def _write_scene_corpus(out_dir: Path, cfg: dict[str, Any], bank: DigitBank) -> list[str]:
    """scene_corpus/part<k>.json (images under images/scenes/): the corpus of stage 0, one file per part."""
    parts = cfg.get("scene_corpus", [])
    if not parts:
        return []
    (out_dir / "scene_corpus").mkdir(parents=True, exist_ok=True)
    files = []
    writer = _ImageWriter(out_dir / "images", "scenes", bank)
    for k, records in enumerate(build_scene_corpus(parts, cfg["seed"], bank, writer)):
        files.append(f"scene_corpus/part{k}.json")
        _dump(out_dir / files[-1], records)
    return files


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=None, separators=(",", ":")))
