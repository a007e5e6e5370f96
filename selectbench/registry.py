"""The pipeline's seams, as registries keyed by config: which data source prepares a dataset (`datasets.<d>.source`),
which builder makes a role's base model (`models.<role>.builder`), which builder provides clip_score's CLIP
(`clip.builder`), which evaluator scores a model (`evaluation.backend`). Alternatives are equal entries, not
branches: the embedded world plugs in here exactly as the real datasets and models do.

Each entry is "module:function", imported only when a job calls it, so this module (read when the DAG is planned)
stays import-free. Method plug-ins and per-example features have registries of their own (methods/,
selectbench.features). Signatures:
  source(dataset_cfg, tmp) -> (manifest, pool or None for a pool the source wrote itself)
  builder(data, tokenizer_dir, model_cfg, seed, out_dir, threads) -> train summary (the model published)
  clip_builder(data, tokenizer_dir, clip_cfg, model_dir, threads) -> the clip_model pointer {"source": ...}
  evaluator(job: selectbench.evaluation.evaluators.EvalJob) -> rows
"""

from __future__ import annotations

import importlib
from typing import Callable

SEAMS: dict[str, dict[str, str]] = {
    "source": {
        "llava665k": "selectbench.data.prepare:llava665k",
        "llava": "selectbench.data.prepare:llava665k",  # any LLaVA-format file reads as LLaVA-665k
        "vision_flan": "selectbench.data.prepare:vision_flan",
        "embedded": "selectbench.embedded.dataset:generate",
        "embedded_vision_flan": "selectbench.embedded.vision_flan:generate",  # digits, read as Vision-Flan
    },
    "builder": {
        "pretrained": "selectbench.training.stages:pretrained_base",
        "digits_recipe": "selectbench.embedded.recipe:train_base",
    },
    "clip_builder": {
        "pretrained": "selectbench.models.clip:pretrained_clip",
        "digits_recipe": "selectbench.embedded.clip:trained_clip",
    },
    "evaluator": {
        "builtin": "selectbench.evaluation.run:run_job",
        "lmms_eval": "selectbench.evaluation.lmms:run_job",
    },
}
DEFAULTS = {"builder": "pretrained", "clip_builder": "pretrained", "evaluator": "builtin"}
# Entries that train on a tokenizer fitted to the dataset (the workflow's tokenizer rule); the others bring theirs.
NEEDS_TOKENIZER = {("builder", "digits_recipe"), ("clip_builder", "digits_recipe")}
# Entries whose config section has a schema of its own, checked when the DAG is planned: "package:file#definition".
SCHEMAS = {
    ("source", "embedded"): "selectbench.embedded:schema.yaml#dataset",
    ("source", "embedded_vision_flan"): "selectbench.embedded:schema.yaml#vision_flan",
    ("builder", "digits_recipe"): "selectbench.embedded:schema.yaml#recipe",
    ("clip_builder", "digits_recipe"): "selectbench.embedded:schema.yaml#clip",
}
# the top-level `tokenizer:` section, read by the tokenizer rule where an entry NEEDS_TOKENIZER
TOKENIZER_SCHEMA = "selectbench.embedded:schema.yaml#tokenizer"


def check(seam: str, name: str | None, where: str) -> str:
    """The entry's name (the seam's default for None); an unknown name is an error naming the config key."""
    name = name or DEFAULTS.get(seam)
    if name not in SEAMS[seam]:
        raise ValueError(f"{where}: unknown {seam} {name!r} (known: {', '.join(sorted(SEAMS[seam]))})")
    return name


def load(seam: str, name: str | None, where: str = "") -> Callable:
    module, func = SEAMS[seam][check(seam, name, where or seam)].split(":")
    return getattr(importlib.import_module(module), func)


def needs_tokenizer(seam: str, name: str | None) -> bool:
    return (seam, name or DEFAULTS.get(seam)) in NEEDS_TOKENIZER
