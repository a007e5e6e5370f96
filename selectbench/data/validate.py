"""Reading and validating LLaVA-format pools. Every problem names the file and the record (row and id).

Checks (../docs: data.md): malformed JSON, record without conversations, turns not alternating
human/gpt, empty turn, non-string values, <image> missing while an image is given or present without one,
missing / empty / unreadable image, duplicate ids. A policy per kind of problem decides: fail, drop the
record (and record it in the report), or allow (duplicate ids in LLaVA-665k are a statistic, not an error).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_TOKEN = "<image>"
MAX_EXAMPLES = 5


class PoolError(ValueError):
    """Bad input data; the message names the file and the record."""


@dataclass
class Report:
    total: int = 0
    kept: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, message: str) -> None:
        self.problems[kind].append(message)

    def as_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept,
                "problems": {k: {"count": len(v), "first": v[:MAX_EXAMPLES]} for k, v in self.problems.items()}}


def load_json_list(path: Path) -> list:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PoolError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise PoolError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, list):
        raise PoolError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def record_problems(record: object, image_root: Path, check_images: bool = True) -> list[tuple[str, str]]:
    """(kind, detail) for every problem of one record; kinds: structure, image_token, image."""
    if not isinstance(record, dict):
        return [("structure", f"record is a {type(record).__name__}, not an object")]
    out: list[tuple[str, str]] = []
    if not isinstance(record.get("id"), (str, int)):
        out.append(("structure", "missing or non-string id"))
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv:
        return out + [("structure", "no conversations")]
    for k, turn in enumerate(conv):
        expected = "human" if k % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            out.append(("structure", f"turn {k} should be from {expected!r} (turns must alternate human/gpt)"))
        elif not isinstance(turn.get("value"), str):
            out.append(("structure", f"turn {k} has a non-string value"))
        elif not turn["value"].strip():
            out.append(("structure", f"turn {k} is empty"))
    if len(conv) % 2:
        out.append(("structure", "conversation ends on a human turn (no answer to supervise)"))
    if out:
        return out
    has_token = IMAGE_TOKEN in conv[0]["value"]
    n_tokens = sum(t["value"].count(IMAGE_TOKEN) for t in conv)
    image = record.get("image")
    if image is not None and not isinstance(image, str):
        return [("structure", "image is not a string path")]
    if image and not has_token:
        out.append(("image_token", "image given but no <image> token in the first human turn"))
    elif not image and n_tokens:
        out.append(("image_token", "<image> token present but the record has no image"))
    elif n_tokens > 1:
        out.append(("image_token", f"{n_tokens} <image> tokens for one image"))
    if image and check_images:
        path = image_root / image
        try:
            if path.stat().st_size == 0:
                out.append(("image", f"{path}: empty image file"))
            else:
                with Image.open(path) as im:
                    im.verify()
        except FileNotFoundError:
            out.append(("image", f"{path}: image file not found"))
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            out.append(("image", f"{path}: unreadable image ({err})"))
    return out


def validate_pool(path: Path, image_root: Path, policy: dict[str, str]) -> tuple[list[dict], Report]:
    """Load and check a pool. policy: broken_records (fail | drop), duplicate_ids (fail | drop | allow).
    Raises PoolError naming the file and the first offending record when the policy says fail."""
    records = load_json_list(path)
    report = Report(total=len(records))
    broken_policy = policy.get("broken_records", "fail")
    dup_policy = policy.get("duplicate_ids", "fail")
    kept: list[dict] = []
    for row, record in enumerate(records):
        rid = record.get("id") if isinstance(record, dict) else None
        problems = record_problems(record, Path(image_root))
        if problems:
            for kind, detail in problems:
                message = f"{path}: record {row} (id {rid!r}): {detail}"
                report.add(kind, message)
                if broken_policy == "fail":
                    raise PoolError(message)
            continue
        kept.append(record)
    counts = Counter(str(r["id"]) for r in kept)
    duplicated = {i for i, c in counts.items() if c > 1}
    if duplicated:
        rows = [row for row, r in enumerate(records) if isinstance(r, dict) and str(r.get("id")) in duplicated]
        first = sorted(duplicated)[0]
        message = f"{path}: duplicate id {first!r} ({len(duplicated)} ids repeated, rows e.g. {rows[:4]})"
        report.add("duplicate_ids", message)
        if dup_policy == "fail":
            raise PoolError(message)
        if dup_policy == "drop":
            seen: set[str] = set()
            unique = []
            for r in kept:
                if str(r["id"]) not in seen:
                    seen.add(str(r["id"]))
                    unique.append(r)
            kept = unique
    if not kept:
        raise PoolError(f"{path}: no usable record left after validation")
    report.kept = len(kept)
    return kept, report
