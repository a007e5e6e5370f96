"""Cost of XMAS trajectory extraction relative to a plain forward pass of the same proxy on the same batches.

Usage: python benchmarks/xmas_extraction.py [--data results/digits/data]
                                            [--checkpoints results/digits/proxy/finetune/checkpoints.json]
                                            [--examples 512] [--batch-size 32] [--repeats 3]
Needs the embedded default's proxy (run `snakemake --cores all` first). Measures, per checkpoint pass:
plain forward; the suite's extraction (hooked blocks + batched exact SVD + per-example loss) for both
variants; and the naive path (output_attentions=True on every layer, then one SVD per example in numpy).
Target from the spec: extraction ≤ 1.3× the plain forward.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from selectbench.data.images import ImageLoader
from selectbench.data.datadir import DataDir
from selectbench.features.attention import BatchLayout
from selectbench.features.sharding import plan_batches
from selectbench.features.trajectories import trajectories_for_checkpoint
from selectbench.models.build import load_checkpoint
from selectbench.models.conversation import make_template
from selectbench.training.data import Collator, SupervisedDataset


@torch.inference_mode()
def plain_forward(model, batches):
    for b in batches:
        model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], pixel_values=b["pixel_values"])


NAIVE_MAP_BYTES = [0]


@torch.inference_mode()
def naive(model, batches, k=5):
    """Full attention maps of every layer, then each example's block and its SVD one by one."""
    model.set_attn_implementation("eager")
    try:
        for b in batches:
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        pixel_values=b["pixel_values"], output_attentions=True)
            maps = sum(a.numel() * a.element_size() for a in out.attentions)
            NAIVE_MAP_BYTES[0] = max(NAIVE_MAP_BYTES[0], maps)
            layout = BatchLayout.from_inputs(b["input_ids"], b["attention_mask"], model.config.image_token_id)
            total = torch.stack(out.attentions).mean(2).sum(0)  # heads averaged, layers summed: (B, S, S)
            for i in range(total.shape[0]):
                rows = layout.text_rows[i].nonzero().flatten()
                cols = layout.image_index[i][layout.image_valid[i]]
                np.linalg.svd(total[i][rows][:, cols].numpy(), compute_uv=False)[:k]
    finally:
        model.set_attn_implementation("sdpa")


def synthetic(args):
    """A random-weight LLaVA closer to paper shapes (wider, deeper, 144 image tokens, ~400-token sequences)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(0)
    image_tokens = (args.image_size // 14) ** 2
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=args.image_size, patch_size=14, hidden_size=128,
                                       intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
        text_config=LlamaConfig(vocab_size=1000, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                                num_hidden_layers=args.layers, num_attention_heads=args.heads,
                                num_key_value_heads=args.heads, max_position_embeddings=4096, pad_token_id=0),
        image_token_index=999, image_seq_length=image_tokens, vision_feature_layer=-2)
    model = LlavaForConditionalGeneration(config).eval()
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(args.synthetic_batches):
        lengths = rng.integers(args.text_tokens // 2, args.text_tokens, args.batch_size)
        width = 20 + image_tokens + int(lengths.max())
        ids = torch.zeros((args.batch_size, width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, n in enumerate(lengths):
            seq = np.concatenate([rng.integers(1, 999, 20), np.full(image_tokens, 999), rng.integers(1, 999, n)])
            ids[i, :len(seq)] = torch.from_numpy(seq)
            mask[i, :len(seq)] = 1
            labels[i, len(seq) - n // 2:len(seq)] = ids[i, len(seq) - n // 2:len(seq)]
        pixels = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels})
    return model, batches


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="results/digits/data")
    ap.add_argument("--checkpoints", default="results/digits/proxy/finetune/checkpoints.json")
    ap.add_argument("--examples", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--synthetic", action="store_true", help="random-weight wider model instead of the proxy")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=168)
    ap.add_argument("--text-tokens", type=int, default=256)
    ap.add_argument("--synthetic-batches", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.synthetic:
        model, batches = synthetic(args)
        run(model, batches, args, {"model": "synthetic", "hidden": args.hidden, "layers": args.layers,
                                   "heads": args.heads, "batches": len(batches),
                                   "mean_tokens": float(np.mean([b["attention_mask"].sum(1).float().mean()
                                                                 for b in batches]))})
        return
    data = DataDir(Path(args.data))
    checkpoint = json.loads(Path(args.checkpoints).read_text())[-1]
    model, tokenizer, processor = load_checkpoint(Path(checkpoint))
    model.eval()
    template = make_template(tokenizer, model, {"system": "A chat.", "max_length": 256})
    images = ImageLoader(data.image_root, processor)
    rows = [i for i, r in enumerate(data.pool) if "image" in r][:args.examples]
    dataset = SupervisedDataset([data.pool[r] for r in rows], template, images)
    position = {r: i for i, r in enumerate(rows)}
    collate = Collator(tokenizer.pad_token_id, images)
    batches = [collate([dataset[position[r]] for r in b]) for b in plan_batches(data.pool, rows, args.batch_size)]
    run(model, batches, args, {"model": "embedded proxy", "examples": len(rows),
                               "layers": model.config.text_config.num_hidden_layers,
                               "hidden": model.config.text_config.hidden_size,
                               "mean_tokens": float(np.mean([len(e.input_ids) for e in dataset.encoded]))})


def run(model, batches, args, result):
    cpu = torch.device("cpu")
    spec = {"layers": "all", "combine": "sum", "k": 5, "svd": "exact", "skip_after_image": 1}
    result.update(batch_size=args.batch_size, threads=args.threads)
    base = best_of(lambda: plain_forward(model, batches), args.repeats)
    result["forward_s"] = round(base, 3)
    for attention in ("released", "paper"):
        t = best_of(lambda: trajectories_for_checkpoint(model, batches, {**spec, "attention": attention}, cpu),
                    args.repeats)
        result[f"{attention}_s"] = round(t, 3)
        result[f"{attention}_ratio"] = round(t / base, 2)
    t = best_of(lambda: naive(model, batches), args.repeats)
    result["naive_s"], result["naive_ratio"] = round(t, 3), round(t / base, 2)
    result["naive_attention_maps_mb_per_batch"] = round(NAIVE_MAP_BYTES[0] / 2**20, 1)
    b = max(batches, key=lambda x: x["input_ids"].numel())
    layout = BatchLayout.from_inputs(b["input_ids"], b["attention_mask"], model.config.image_token_id)
    block = b["input_ids"].shape[0] * (b["input_ids"].shape[1] - layout.row_start) * layout.image_index.shape[1] * 4
    result["suite_block_mb_per_batch"] = round(block / 2**20, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
