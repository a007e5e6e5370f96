"""Scoring cost per method on the embedded pool, from the DAG's own per-job records (results/benchmarks/).

Usage: python benchmarks/method_costs.py [--dataset digits]
For each method instance: the shared work it needs (proxy fine-tune, trajectory/statistics/gradient/CLIP
shards and gathers, warm-up, CLIP training), its score step and the mean select step, as wall seconds and the
largest peak resident memory of any of those jobs. Shared work is listed once per method that uses it (a
method added to a suite that already runs XMAS pays only the parts it does not share).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def read(path: Path) -> tuple[float, float]:
    with open(path) as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))
    return float(row["s"]), float(row["max_rss"])


SHARED = {
    "xmas": ["base_proxy", "proxy_finetune", "feature_attention_trajectories_*"],
    "perplexity": ["base_proxy", "proxy_finetune", "feature_proxy_token_stats_*"],
    "el2n": ["base_proxy", "proxy_finetune", "feature_proxy_token_stats_*"],
    "clip_score": ["clip_model", "feature_clip_score_*"],
    "gradient": ["base_proxy", "gradient_warmup", "feature_lora_gradients_*"],
    "random": [],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--results", default="results")
    args = ap.parse_args()
    root = Path(args.results) / "benchmarks" / args.dataset
    out = {}
    for method, patterns in SHARED.items():
        jobs = [p for pattern in patterns for p in sorted(root.glob(pattern + ".tsv"))]
        scores = sorted(root.glob(f"score_{method}.tsv")) + sorted(root.glob(f"score_{method}__*.tsv"))
        selects = sorted(root.glob(f"select_{method}_r*.tsv")) + sorted(root.glob(f"select_{method}__*_r*.tsv"))
        if not scores:
            continue
        shared = [read(p) for p in jobs]
        score = [read(p) for p in scores]
        select = [read(p) for p in selects]
        out[method] = {"shared_s": round(sum(s for s, _ in shared), 1), "score_s": round(sum(s for s, _ in score), 1),
                       "select_mean_s": round(sum(s for s, _ in select) / max(1, len(select)), 2),
                       "peak_rss_mb": round(max([m for _, m in shared + score + select] or [0]), 0),
                       "shared_jobs": [p.stem for p in jobs]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
