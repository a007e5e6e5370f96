"""The suite's per-sample store of an lmms-eval run: every answer is appended to disk as soon as the model gives it,
so that an evaluate job killed mid-way (its time limit, a preemption) resumes where it stopped on its retry instead
of starting from scratch.

lmms-eval 0.7.3's own --use_cache does not resume: it hands all of a run's requests of one type to the model in one
call and stores the answers only when that call returns, and merges a run into its cache only when the run succeeds. This
store takes its place behind the same hook (the evaluator's `response_cache.execute(lm, reqtype, requests)`),
installed by the entry point (selectbench.evaluation.lmms_model) when the suite names a store folder:

* Requests go to the model in fixed chunks of CHUNK, in lmms-eval's order, and each chunk's answers are appended
  and fsynced before the next chunk starts: a kill loses one chunk at most. A chunk that is not wholly stored is
  asked again whole, so the model sees the same batches as in an uninterrupted run and gives the same answers.
* An answer's key is the request type, task, document, index, the prompt text, the generation settings and the
  task's configuration; the folder's identity.json holds the model (its files' fingerprint), its arguments and the
  lmms-eval version. A store whose identity differs is emptied before the run (prepare), never read.
* Empty answers (llava_hf answers "" when generation fails) are not stored: a retry asks again.

Layout: <out without .csv>.responses/identity.json and responses.rank<r>.jsonl (one JSON line per answer; a line
cut short by a kill is ignored). Import-light: lmms-eval is imported only by the entry point that installs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STORE_ENV = "SELECTBENCH_RESPONSE_STORE"  # the folder, set by evaluate_lmms for the entry point
# requests per model call between two writes: a kill loses ≤ ~10 s of a 7B model's answers (the tests set fewer)
CHUNK_ENV = "SELECTBENCH_STORE_CHUNK"
CHUNK = 32
FORMAT = 1
IDENTITY = "identity.json"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")  # function reprs in a task's dumped config differ between runs


def prepare(folder: Path, identity: dict) -> int:
    """Make folder the store of a run with this identity: kept when it was written by the same model, arguments
    and lmms-eval, emptied otherwise. Returns the number of answers kept."""
    folder = Path(folder)
    identity = {"format": FORMAT, **identity}
    path = folder / IDENTITY
    if folder.exists():
        try:
            same = json.loads(path.read_text()) == json.loads(json.dumps(identity, default=str))
        except (OSError, json.JSONDecodeError):
            same = False
        if not same:
            log.warning("%s: written for another model or settings; starting afresh", folder)
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=1, sort_keys=True, default=str))
    return len(load(folder))


def load(folder: Path) -> dict[str, Any]:
    """Every stored answer by key, from every rank's file; a line a kill cut short is skipped."""
    known: dict[str, Any] = {}
    for path in sorted(Path(folder).glob("responses.rank*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                    known[record["key"]] = record["response"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    return known


def _task_fingerprints(task_dict: dict | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, task in (task_dict or {}).items():
        if hasattr(task, "dump_config"):
            text = _ADDRESS.sub(">", json.dumps(task.dump_config(), sort_keys=True, default=str))
            out[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
        elif isinstance(task, dict):
            out.update(_task_fingerprints(task))
    return out


def request_key(reqtype: str, req: Any, task_fingerprint: str = "") -> str:
    """What identifies an answer: request type, task, document, index, the leading text arguments (context and
    continuation) and the generation settings (the one dict among the arguments)."""
    settings = next((arg for arg in req.args if isinstance(arg, dict)), {})
    leading = []
    for arg in req.args:
        if not isinstance(arg, str):
            break
        leading.append(arg)
    payload = [reqtype, req.task_name, req.doc_id, req.idx, leading, settings, task_fingerprint]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _plain(response: Any) -> Any:
    """The storable part of an answer: a generation's text (GenerationResult.text), or the value itself."""
    text = getattr(response, "text", None)
    return text if isinstance(text, str) else response


def _usable(reqtype: str, value: Any) -> bool:
    if reqtype.startswith("generate"):
        return isinstance(value, str) and bool(value.strip())
    return value is not None


def _restore(reqtype: str, value: Any) -> Any:
    """A stored answer as the model returned it: JSON makes lists of loglikelihood's (value, is_greedy) tuples."""
    return tuple(value) if reqtype == "loglikelihood" and isinstance(value, list) else value


class ResponseStore:
    """Stands in for lmms-eval's ResponseCache (create / execute / finalize) in the evaluator."""

    def __init__(self, folder: Path, rank: int = 0, task_fingerprints: dict[str, str] | None = None):
        self.folder = Path(folder)
        if not (self.folder / IDENTITY).exists():
            raise FileNotFoundError(f"{self.folder}: no {IDENTITY} (the suite prepares the store before the run)")
        self.known = load(self.folder)
        self.path = self.folder / f"responses.rank{int(rank)}.jsonl"
        self.tasks = task_fingerprints or {}
        self.reused = self.computed = 0

    @classmethod
    def create(cls, cache_root: str, *, task_dict: dict | None = None, global_rank: int = 0, **_: Any):
        return cls(Path(cache_root), global_rank, _task_fingerprints(task_dict))

    def execute(self, lm: Any, reqtype: str, requests: list) -> list:
        keys = [request_key(reqtype, r, self.tasks.get(r.task_name, "")) for r in requests]
        out: list = [None] * len(requests)
        size = max(1, int(os.environ.get(CHUNK_ENV) or CHUNK))
        for start in range(0, len(requests), size):
            chunk = range(start, min(start + size, len(requests)))
            if all(keys[i] in self.known for i in chunk):
                for i in chunk:
                    out[i] = _restore(reqtype, self.known[keys[i]])
                self.reused += len(chunk)
                continue
            answers = getattr(lm, reqtype)([requests[i] for i in chunk])
            with open(self.path, "a", encoding="utf-8") as fh:
                for i, answer in zip(chunk, answers):
                    out[i] = answer
                    value = _plain(answer)
                    if _usable(reqtype, value):
                        fh.write(json.dumps({"key": keys[i], "response": value}, ensure_ascii=False) + "\n")
                        self.known[keys[i]] = value
                fh.flush()
                os.fsync(fh.fileno())
            self.computed += len(chunk)
        return out

    def finalize(self, *, success: bool = True, **_: Any) -> None:
        # in lmms-eval's log (the run's lmms_eval.log), where the resumed run shows what it reused
        sys.stderr.write(f"selectbench response store {self.folder}: {self.reused} answers reused, {self.computed} "
                         f"asked of the model\n")


def install() -> None:
    """Put the store behind lmms-eval's response-cache hook (lmms-eval's --use_cache names its folder)."""
    import lmms_eval.evaluator as evaluator

    evaluator.ResponseCache = ResponseStore
