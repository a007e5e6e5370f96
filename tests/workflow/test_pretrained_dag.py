"""The DAG as paper scale wires it, run end to end on stand-ins through the real snakemake CLI: both models
assembled from pretrained parts in their original on-disk formats (no tokenizer job; the target from a Vicuna-style
LM, CLIP and LLaVA's mm_projector.bin, trained with the LoRA recipe; a StableLM proxy with a random connector, fully
fine-tuned with kept checkpoints that XMAS reads)."""

from __future__ import annotations

import csv
import json


from tests.conftest import TINY, load_config, run_standalone_dag
from tests.models.conftest import clip_dir, pretrained_cfg, projector_file, stablelm_dir, vicuna_dir  # noqa: F401

TEMPLATE = {"system": "A chat.", "max_length": 256}


def test_dag_with_pretrained_models_runs_end_to_end(tmp_path, vicuna_dir, stablelm_dir, clip_dir,  # noqa: F811
                                                    projector_file):  # noqa: F811
    cfg = load_config(TINY)
    cfg.update(standalone=True, methods={"random": {}, "xmas": {"clusters": 2}}, export_subsets=False)
    cfg["models"] = {
        "target": {"pretrained": pretrained_cfg(vicuna_dir, clip_dir, projector_file), "template": TEMPLATE,
                   "finetune": {"finetune": "lora", "trainable": ["projector", "language_model"],
                                "lora": {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": "all-linear"},
                                "projector_lr": 2e-3, "lr": 1e-2, "epochs": 1, "batch_size": 16, "global_batch": 32,
                                "save_steps": 50, "group_by_length": True}},
        "proxy": {"pretrained": pretrained_cfg(stablelm_dir, clip_dir, None), "template": TEMPLATE,
                  "finetune": {"finetune": "full", "trainable": ["projector", "language_model"], "epochs": 1,
                               "batch_size": 16, "lr": 1e-3, "checkpoints": 2}}}
    results = run_standalone_dag(tmp_path, cfg) / "digits"
    assert not (results / "tokenizer").exists(), "pretrained models bring their own tokenizer"
    base = json.loads((results / "base" / "target" / "train_summary.json").read_text())
    assert base["assembled"]["projector"] == str(projector_file) and "not run" in base["stage1"]
    assert (results / "base" / "target" / "model" / "chat_template.jinja").exists()
    assert len(json.loads((results / "proxy" / "finetune" / "checkpoints.json").read_text())) == 2
    target = json.loads((results / "target" / "xmas" / "r0.5_s0" / "train_summary.json").read_text())
    assert target["examples"] == round(0.5 * len(json.loads((results / "data" / "pool.json").read_text())))
    with open(tmp_path / "results" / "tables" / "digits.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["method"] for r in rows} == {"full", "random", "xmas"}
    assert {r["benchmark"] for r in rows} == set(cfg["datasets"]["digits"]["benchmarks"])
