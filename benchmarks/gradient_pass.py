"""Throughput of the per-example gradient pass (gradient baseline) against a plain forward+backward.

Usage: python benchmarks/gradient_pass.py [--examples 256] [--batch-size 16] [--threads 1]
Needs the embedded default's proxy base and gradient warm-up (run `snakemake --cores all` first). Measures
examples/s of: a plain forward+backward of the batch loss (what training costs); the suite's batched
per-example gradients (one backward per batch + hooks, then projection); and the naive route, one backward
per example.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from selectbench.data.datadir import DataDir
from selectbench.features import FEATURES
from selectbench.features.gradients import gradient_features, load_warm_model, per_example_losses_sum
from selectbench.features.passes import shard_batches_for


def plain(model, batches):
    for b in batches:
        model.zero_grad(set_to_none=True)
        per_example_losses_sum(model, b).backward()


def one_by_one(model, batches):
    for b in batches:
        images = 0
        for i in range(b["input_ids"].shape[0]):
            n = int(b["attention_mask"][i].sum())
            single = {k: b[k][i:i + 1, :n] for k in ("input_ids", "attention_mask", "labels")}
            if (b["input_ids"][i] == model.config.image_token_id).any():
                single["pixel_values"] = b["pixel_values"][images:images + 1]
                images += 1
            model.zero_grad(set_to_none=True)
            per_example_losses_sum(model, single).backward()
            torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="results/digits/data")
    ap.add_argument("--warmup", default="results/digits/gradient/warmup.json")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warm = json.loads(Path(args.warmup).read_text())
    start = Path(warm["model"]) if "model" in warm else Path(warm["base"]) / "model"
    model, _, _, adam = load_warm_model(start, Path(warm["warmup"]))
    data = DataDir(Path(args.data))
    _, batches = shard_batches_for(data, start, {"template": {"system": "A chat.",
                                   "max_length": 256}}, range(args.examples), 0, 1, args.batch_size)
    spec = FEATURES["lora_gradients"].spec({})
    result = {"examples": args.examples, "batch_size": args.batch_size, "threads": args.threads,
              "lora_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad), "dim": spec["dim"]}
    for name, fn in [("forward_backward", lambda: plain(model, batches)),
                     ("batched_per_example", lambda: gradient_features(model, batches, adam, spec,
                                                                       torch.device("cpu"))),
                     ("one_backward_per_example", lambda: one_by_one(model, batches))]:
        fn()  # warm-up
        t0 = time.perf_counter()
        fn()
        result[f"{name}_examples_per_s"] = round(args.examples / (time.perf_counter() - t0), 1)
    base = result["forward_backward_examples_per_s"]
    result["batched_relative"] = round(result["batched_per_example_examples_per_s"] / base, 2)
    result["one_by_one_relative"] = round(result["one_backward_per_example_examples_per_s"] / base, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
