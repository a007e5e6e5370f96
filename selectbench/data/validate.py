"""Checking LLaVA-format pools record by record: a report (count and first examples per kind of problem, each
naming the file, the row and the id) and a policy that decides what a problem does (../docs: data.md).

Broken records (policy broken_records: fail | drop):
  not_an_object, bad_id, no_conversations, non_alternating (turns not human/gpt/human/…, or the last turn is a
  question), empty_turn, non_string_value (a turn's value or the image path), image_outside_root (an absolute
  path, or one whose ".." leaves the image root; links inside the root are followed, as for linked source
  folders), image_token_missing (an image but no
  <image> in the first human turn), image_token_without_image, multiple_image_tokens, missing_image, empty_image
  (zero bytes), unreadable_image (images: open only), and kinds a reader adds (Vision-Flan: no_task).
Duplicate ids (policy duplicate_ids: fail | drop | allow): in LLaVA-665k ids are not unique (a COCO image id
  names every conversation about that image), so "allow" keeps every record and reports the statistic.
Statistics, never a reason to drop: trailing_image_token (LLaVA moves it to the front before tokenising),
  duplicate_ids, whatever a reader adds, and the count per image source.
Images (images: open | exists | none), checked once per distinct path on a thread pool: exists = the file is there
  and not empty (one stat); open = also PIL's open + verify (header, PNG checksums; not a full decode).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from PIL import Image

IMAGE_TOKEN = "<image>"
MAX_EXAMPLES = 5
POLICY_CHOICES = {"broken_records": ("fail", "drop"), "duplicate_ids": ("fail", "drop", "allow"),
                  "images": ("open", "exists", "none")}
# max_dropped_fraction: `drop` that would drop more of the pool than this is an error, not a smaller pool; a wrong
# image_root or image values with an unexpected folder prefix make nearly every record "missing_image"
POLICY_DEFAULTS = {"broken_records": "fail", "duplicate_ids": "fail", "images": "open", "image_workers": 16,
                   "max_dropped_fraction": 0.05}
_CHUNK = 512  # image paths per thread-pool task: one task per path would cost more than a stat


class PoolError(ValueError):
    """Bad input data; the message names the file and the record."""


Problem = tuple[str, str]  # (kind, detail)


@dataclass
class Report:
    """What validation found; as_dict() is validation.json."""

    file: str
    total: int = 0
    kept: int = 0
    policy: dict[str, Any] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    statistics: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, row: int, rid: Any, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append({"file": self.file, "row": row, "id": jsonable(rid), "detail": detail})

    def as_dict(self) -> dict:
        return {"file": self.file, "total": self.total, "kept": self.kept, "dropped": self.total - self.kept,
                "policy": self.policy, "sources": self.sources,
                "problems": {k: {"count": self.counts[k], "first": self.examples[k]} for k in sorted(self.counts)},
                "statistics": self.statistics, "seconds": self.seconds}


def jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


def _message(file: str, row: int, rid: Any, detail: str) -> str:
    return f"{file}: record {row} (id {jsonable(rid)!r}): {detail}"


def load_json(path: Path, expected: type, what: str) -> Any:
    """A JSON file holding an `expected` (list or dict); PoolError naming the file (and the position) otherwise."""
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise PoolError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise PoolError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise PoolError(f"{path}: not UTF-8 text ({err})") from None
    except RecursionError:
        raise PoolError(f"{path}: JSON nested too deeply to read (a pool is a list of flat records)") from None
    if not isinstance(data, expected):
        raise PoolError(f"{path}: expected {what}, got {type(data).__name__}")
    return data


def load_json_list(path: Path) -> list:
    """A JSON file holding a list of records; PoolError naming the file (and the position) otherwise."""
    return load_json(path, list, "a JSON list of records")


def resolve_policy(policy: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The validation block of a dataset's config with defaults filled in; ValueError on an unknown key or value."""
    out = {**POLICY_DEFAULTS, **(defaults or {})}
    for key, value in (policy or {}).items():
        if key not in POLICY_DEFAULTS:
            raise ValueError(f"validation: unknown key {key!r} (known: {', '.join(POLICY_DEFAULTS)})")
        out[key] = value
    for key, choices in POLICY_CHOICES.items():
        if out[key] not in choices:
            raise ValueError(f"validation.{key}: {out[key]!r} is not one of {', '.join(choices)}")
    if not isinstance(out["image_workers"], int) or out["image_workers"] < 1:
        raise ValueError(f"validation.image_workers: {out['image_workers']!r} is not a positive integer")
    fraction = out["max_dropped_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"validation.max_dropped_fraction: {fraction!r} is not a number in [0, 1]")
    return out


def structure_problems(record: object) -> list[Problem]:
    """Every problem of one record that needs no file access."""
    if not isinstance(record, dict):
        return [("not_an_object", f"record is a {type(record).__name__}, not an object")]
    out: list[Problem] = []
    rid = record.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
        out.append(("bad_id", "missing or non-string id"))
    has_image = "image" in record
    image = record.get("image")
    if has_image and (not isinstance(image, str) or not image.strip()):
        out.append(("non_string_value", f"image is not a path ({image!r})"))
    elif has_image and outside_root(image):
        out.append(("image_outside_root", f"image path {image!r} leaves the image root (absolute, or '..')"))
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv:
        return out + [("no_conversations", "no conversations")]
    for k, turn in enumerate(conv):
        expected = "human" if k % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            found = turn.get("from") if isinstance(turn, dict) else type(turn).__name__
            out.append(("non_alternating",
                        f"turn {k} should be from {expected!r}, found {found!r} (turns must alternate human/gpt)"))
        elif not isinstance(turn.get("value"), str):
            out.append(("non_string_value", f"turn {k} has a non-string value ({type(turn.get('value')).__name__})"))
        elif not turn["value"].strip():
            out.append(("empty_turn", f"turn {k} is empty"))
    if len(conv) % 2:
        out.append(("non_alternating", "conversation ends on a human turn (no answer to supervise)"))
    if out:
        return out
    in_first = conv[0]["value"].count(IMAGE_TOKEN)
    in_all = sum(t["value"].count(IMAGE_TOKEN) for t in conv)
    if has_image and not in_first:
        out.append(("image_token_missing", "image given but no <image> token in the first human turn"))
    elif has_image and in_all > 1:
        out.append(("multiple_image_tokens", f"{in_all} <image> tokens for one image"))
    elif not has_image and in_all:
        out.append(("image_token_without_image", "<image> token present but the record has no image"))
    return out


def outside_root(image: str) -> bool:
    """True for an image path that does not stay under the image root when joined to it: absolute (POSIX or a
    Windows drive) or, once normalised, starting with "..". Checked on the text, so a link inside the root (a
    source folder linked in, as LLaVA's layout is often assembled) still counts as inside."""
    norm = posixpath.normpath(image.replace("\\", "/"))
    return norm.startswith("/") or bool(re.match(r"[A-Za-z]:/", norm)) or norm == ".." or norm.startswith("../")


def image_problem(path: Path, mode: str = "open") -> Problem | None:
    """missing_image / empty_image / unreadable_image for one file, or None (mode: open | exists | none)."""
    if mode == "none":
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ("missing_image", f"{path}: image file not found")
    except OSError as err:
        return ("unreadable_image", f"{path}: unreadable image ({err})")
    if not stat.S_ISREG(st.st_mode):
        return ("unreadable_image", f"{path}: not a regular file")
    if st.st_size == 0:
        return ("empty_image", f"{path}: empty image file")
    if mode == "open":
        try:
            with Image.open(path) as im:
                im.verify()
        except Exception as err:  # noqa: BLE001 - PIL raises many types for a corrupt file; all mean unreadable
            return ("unreadable_image", f"{path}: unreadable image ({type(err).__name__}: {err})")
    return None


def check_images(images: Iterable[str], image_root: Path, mode: str, workers: int = 16) -> dict[str, Problem]:
    """{relative path: problem} for the distinct paths that have one (a thread pool: stat and verify wait on I/O)."""
    if mode == "none":
        return {}
    paths = sorted(set(images))
    root = Path(image_root)

    def chunk(part: Sequence[str]) -> list[tuple[str, Problem]]:
        return [(p, prob) for p in part if (prob := image_problem(root / p, mode)) is not None]

    parts = [paths[i: i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    if workers == 1 or len(parts) <= 1:
        found = [chunk(p) for p in parts]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(chunk, parts))
    return {p: prob for part in found for p, prob in part}


def validate_records(records: Sequence[Any], image_root: Path, policy: Mapping[str, Any], file: str | Path,
                     sources: Sequence[str] | None = None,
                     extra: Mapping[int, list[Problem]] | None = None,
                     statistics: Mapping[str, Any] | None = None) -> tuple[list[int], Report]:
    """Check records (rows = positions in `file`); returns the rows kept and the report.

    policy: a resolved validation block (resolve_policy). sources: the image source (or task) of each record, for
    counts per source. extra: problems a reader found per row (they count as broken). statistics: a reader's own,
    copied into the report. Raises PoolError naming file, row and id when the policy says fail.
    """
    policy = resolve_policy(policy)
    file = str(file)
    report = Report(file=file, total=len(records), policy=dict(policy))
    report.statistics.update(statistics or {})
    start = time.perf_counter()
    broken: dict[int, list[Problem]] = {}
    for row, record in enumerate(records):
        problems = structure_problems(record) + list((extra or {}).get(row, ()))
        if problems:
            broken[row] = problems
    report.seconds["records"] = round(time.perf_counter() - start, 3)

    start = time.perf_counter()
    with_image = {row: r["image"] for row, r in enumerate(records) if row not in broken and "image" in r}
    bad = check_images(with_image.values(), Path(image_root), policy["images"], policy["image_workers"])
    broken.update({row: [bad[image]] for row, image in with_image.items() if image in bad})
    _maybe_fail(records, broken, policy, file)  # after the image checks, so its count covers every broken record
    report.seconds["images"] = round(time.perf_counter() - start, 3)
    report.statistics["images_checked"] = {"mode": policy["images"], "distinct_files": len(set(with_image.values()))
                                           if policy["images"] != "none" else 0}

    for row in sorted(broken):
        rid = records[row].get("id") if isinstance(records[row], dict) else None
        seen: set[str] = set()
        for kind, detail in broken[row]:
            if kind not in seen:  # a record counts once per kind; the first detail is its example
                seen.add(kind)
                report.add(kind, row, rid, detail)
    kept = [row for row in range(len(records)) if row not in broken]
    kept = _duplicate_ids(records, kept, policy["duplicate_ids"], report, sources)
    report.statistics["trailing_image_token"] = _trailing_image(records, kept, file)
    if sources is not None:
        report.sources = _per_source(sources, kept)
    _check_dropped_fraction(report, len(kept), policy["max_dropped_fraction"], records, Path(image_root))
    if not kept:
        raise PoolError(f"{file}: no usable record left after validation")
    report.kept = len(kept)
    return kept, report


def _check_dropped_fraction(report: Report, kept: int, limit: float, records: Sequence[Any],
                            image_root: Path) -> None:
    """PoolError when more than `limit` of the pool would be dropped, naming the commonest problem and its first
    record; for missing images, whether the paths repeat the image root's own folder (a root one level too deep)."""
    dropped = report.total - kept
    if dropped <= limit * report.total:
        return
    kind = report.counts.most_common(1)[0][0]
    first = report.examples[kind][0]
    hint = ""
    image = records[first["row"]].get("image") if isinstance(records[first["row"]], dict) else None
    if kind == "missing_image" and isinstance(image, str):
        head = Path(image).parts[0] if len(Path(image).parts) > 1 else None
        hint = (f"; the image values start with '{head}/', the image root's own folder name: set image_root to "
                f"{image_root.parent}" if head is not None and head == image_root.name
                else f"; check image_root ({image_root}) against the records' image paths (first: {image!r})")
    raise PoolError(f"{report.file}: validation would drop {dropped} of {report.total} records "
                    f"({dropped / report.total:.1%}), more than validation.max_dropped_fraction {limit} ("
                    + ", ".join(f"{k}: {n}" for k, n in report.counts.most_common(4))
                    + f"); first {kind}: {_message(report.file, first['row'], first['id'], first['detail'])}{hint}")


def _maybe_fail(records: Sequence[Any], broken: Mapping[int, list[Problem]], policy: Mapping[str, Any],
                file: str) -> None:
    if broken and policy["broken_records"] == "fail":
        row = min(broken)
        rid = records[row].get("id") if isinstance(records[row], dict) else None
        details = "; ".join(detail for _, detail in broken[row])
        more = f" ({len(broken) - 1} more broken records; validation.broken_records: drop drops them)" \
            if len(broken) > 1 else ""
        raise PoolError(_message(file, row, rid, details) + more)


def _duplicate_ids(records: Sequence[dict], kept: list[int], mode: str, report: Report,
                   sources: Sequence[str] | None) -> list[int]:
    by_id: dict[str, list[int]] = defaultdict(list)
    for row in kept:
        by_id[str(records[row]["id"])].append(row)
    repeated = [rows for rows in by_id.values() if len(rows) > 1]
    examples = []
    for rows in repeated[:MAX_EXAMPLES]:
        example = {"id": jsonable(records[rows[0]]["id"]), "records": len(rows), "rows": rows[:10]}
        if sources is not None:
            example["sources"] = sorted({sources[r] for r in rows})
        examples.append(example)
    report.statistics["duplicate_ids"] = {
        "ids_repeated": len(repeated), "records_sharing_an_id": sum(len(r) for r in repeated),
        "max_records_per_id": max((len(r) for r in repeated), default=1 if kept else 0),
        "distinct_ids": len(by_id), "first": examples}
    if not repeated or mode == "allow":
        return kept
    if mode == "fail":
        rows = repeated[0]
        raise PoolError(f"{report.file}: duplicate id {jsonable(records[rows[0]]['id'])!r} in records "
                        f"{rows[:10]} ({len(repeated)} ids repeated by {sum(len(r) for r in repeated)} records; "
                        f"validation.duplicate_ids: allow keeps them, drop keeps the first of each)")
    dropped = set()
    for rows in repeated:
        for row in rows[1:]:
            dropped.add(row)
            report.add("duplicate_ids", row, records[row]["id"], f"same id as record {rows[0]} (kept)")
    return [row for row in kept if row not in dropped]


def _trailing_image(records: Sequence[dict], kept: list[int], file: str) -> dict:
    rows = [row for row in kept if "image" in records[row]
            and not records[row]["conversations"][0]["value"].startswith(IMAGE_TOKEN)]
    return {"count": len(rows), "note": "<image> not at the start of the first human turn; moved there before "
                                        "tokenising (normalise_image_position), as LLaVA does",
            "first": [{"file": file, "row": r, "id": jsonable(records[r]["id"])} for r in rows[:MAX_EXAMPLES]]}


def _per_source(sources: Sequence[str], kept: list[int]) -> dict[str, dict[str, int]]:
    total = Counter(sources)
    kept_count = Counter(sources[r] for r in kept)
    return {s: {"total": n, "kept": kept_count[s], "dropped": n - kept_count[s]} for s, n in total.most_common()}
