"""The evaluate step: one trained model on every benchmark → long-format rows and per-item predictions."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from selectbench.data.images import ImageLoader
from selectbench.data.datadir import DataDir
from selectbench.evaluation.benchmarks import scorer
from selectbench.evaluation.evaluators import COLUMNS, EvalJob
from selectbench.evaluation.items import item_rows, write_items
from selectbench.io import atomic_file, atomic_write_json
from selectbench.evaluation.predict import generate, loglikelihoods
from selectbench.models.build import load_model
from selectbench.models.conversation import make_template

log = logging.getLogger(__name__)

# the protocol column says how a number was obtained; lmms-eval rows name the harness version and the split
BUILTIN_PROTOCOL = "selectbench built-in evaluator, embedded sets"


def run_job(job: EvalJob) -> list[dict]:
    """The "builtin" evaluator (selectbench.evaluation.evaluators): the embedded sets, scored here."""
    return evaluate(job.model, DataDir(job.data), job.benchmarks, job.template, job.key, job.out, job.predictions,
                    job.batch_size, job.threads, job.items)


def evaluate(model_dir: Path, data: DataDir, benchmarks: list[str], template_cfg: dict, key: dict,
             out_csv: Path, predictions_out: Path, batch_size: int = 64, threads: int = 1,
             items_out: Path | None = None) -> list[dict]:
    """key: dataset, method, ratio, seed of the model. Writes COLUMNS rows to out_csv, and each item's scores
    (selectbench.evaluation.items) to items_out where given."""
    model, tokenizer, processor = load_model(Path(model_dir), threads)
    template = make_template(tokenizer, model, template_cfg)
    images = ImageLoader(data.image_root, processor)
    rows, predictions, per_item = [], {}, []
    for name in benchmarks:
        bench = scorer(name)()
        items = data.eval_items(name)
        requests = bench.requests(items)
        start = time.time()
        if bench.request_type == "generate":
            outputs = generate(model, tokenizer, template, images, requests, batch_size, bench.max_new_tokens, name)
            empty = sum(not o for o in outputs)
            if empty:
                log.warning("%s: %d of %d answers are empty", name, empty, len(outputs))
        else:
            outputs = loglikelihoods(model, tokenizer, template, images, requests, batch_size, name)
        log.info("%s: %d requests in %.1f s", name, len(requests), time.time() - start)
        for r in bench.score(items, outputs):
            rows.append({**key, "benchmark": name, "metric": r.metric, "value": round(r.value, 4),
                         "protocol": BUILTIN_PROTOCOL})
        per_item += item_rows(key, name, [it["id"] for it in items], bench.item_scores(items, outputs))
        predictions[name] = [{"id": q["id"], "output": o} for q, o in zip(requests, outputs)]
    if items_out is not None:
        write_items(per_item, Path(items_out))
    write_outputs(rows, predictions, Path(out_csv), Path(predictions_out))
    return rows


def write_outputs(rows: list[dict], predictions: dict, out_csv: Path, predictions_out: Path) -> None:
    """Predictions JSON, then the COLUMNS rows CSV (through a temporary file: a half-written CSV never looks done)."""
    atomic_write_json(Path(predictions_out), predictions, indent=None)
    with atomic_file(Path(out_csv)) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
