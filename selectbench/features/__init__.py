"""Shared per-example features: computed once per (dataset, feature spec) by N shard jobs that a gather step
merges, then read by every method instance, ratio and seed that needs them.

A method asks for a feature by naming it in `requires` and saying which spec it needs (Method.feature_spec);
instances that ask for the same spec share one extraction. A method file may also declare a feature of its own
(Method.features); the DAG treats it exactly like these. This module stays import-light (no torch) because the
Snakefile reads it at planning time.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from selectbench.data.datadir import DataDir


@dataclass(frozen=True)
class ShardJob:
    """What one shard job of a feature extraction is given: the data, the artifacts the feature requires (by name),
    its spec, the model config of the role whose model the pass reads (Feature.model: the proxy for most), which
    shard of how many, and where to write its rows and arrays. dtype is the precision the model's weights are loaded
    in for the pass (config features.dtype); reductions (softmax of attention scores, SVD, losses, per-example
    gradients, projection) stay in float32 whatever it is."""

    data: DataDir
    inputs: dict[str, Path]
    spec: dict[str, Any]
    model_cfg: dict[str, Any]
    shard: int
    shards: int
    batch_size: int
    out: Path
    threads: int = 1
    device: str = "auto"
    dtype: str = "float32"


@dataclass(frozen=True)
class Feature:
    name: str
    defaults: dict[str, Any]
    requires: tuple[str, ...]       # artifacts the extraction reads (selectbench.selection.base.ARTIFACTS)
    extractor: str | Callable       # function(job: ShardJob) -> summary, or "module:function" naming one
    choices: dict[str, tuple] = field(default_factory=dict)
    model: str = "proxy"            # the role whose model config (template) the pass is given: proxy | target

    def spec(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The full spec: defaults updated with overrides; unknown keys and bad choices are errors."""
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise ValueError(f"feature {self.name!r} has no setting(s) {sorted(unknown)}; "
                             f"it takes {sorted(self.defaults)}")
        spec = {**self.defaults, **overrides}
        for key, allowed in self.choices.items():
            if spec[key] not in allowed:
                raise ValueError(f"feature {self.name!r}: {key} must be one of {allowed}, got {spec[key]!r}")
        return spec

    def load(self) -> Callable:
        if callable(self.extractor):
            return self.extractor
        module, func = self.extractor.split(":")
        return getattr(importlib.import_module(module), func)


FEATURES: dict[str, Feature] = {
    "attention_trajectories": Feature(
        name="attention_trajectories",
        # skip_after_image: tokens after the image block that are not rows (the release's slice skips one)
        defaults={"attention": "released", "layers": "all", "combine": "sum", "k": 5, "svd": "exact",
                  "skip_after_image": 1},
        requires=("pool", "proxy_checkpoints"),
        extractor="selectbench.features.trajectories:extract_shard",
        choices={"attention": ("released", "paper"), "combine": ("sum", "concat"), "svd": ("exact", "randomized"),
                 "skip_after_image": (0, 1)},
    ),
    "proxy_token_stats": Feature(
        name="proxy_token_stats",
        defaults={"checkpoint": -1},  # index into the proxy's checkpoint list; -1 = the end of its fine-tune
        requires=("pool", "proxy_checkpoints"),
        extractor="selectbench.features.token_stats:extract_shard",
    ),
    "proxy_embeddings": Feature(
        name="proxy_embeddings",
        defaults={"checkpoint": -1},  # index into the proxy's checkpoint list; -1 = the end of its fine-tune
        requires=("pool", "proxy_checkpoints"),
        extractor="selectbench.features.embeddings:extract_shard",
    ),
    # the same statistics under the target fine-tuned on the whole pool (the XMAS paper's HL / MP scoring model)
    "target_token_stats": Feature(
        name="target_token_stats",
        defaults={},
        requires=("pool", "target_full"),
        extractor="selectbench.features.token_stats:extract_target_shard",
        model="target",
    ),
    "lora_gradients": Feature(
        name="lora_gradients",
        defaults={"dim": 1024, "precondition": "adam", "seed": 0, "chunk_batches": 50},
        requires=("pool", "gradient_warmup"),
        extractor="selectbench.features.gradients:extract_shard",
        choices={"precondition": ("adam", "none")},
    ),
    "clip_score": Feature(
        name="clip_score",
        defaults={},
        requires=("pool", "clip_model"),
        extractor="selectbench.features.clip_score:extract_shard",
    ),
    # CLIP's unit image and text embeddings side by side (Self-Filter's score-net input)
    "clip_embeddings": Feature(
        name="clip_embeddings",
        defaults={},
        requires=("pool", "clip_model"),
        extractor="selectbench.features.clip_score:extract_embeddings_shard",
    ),
    "coincide_features": Feature(
        name="coincide_features",
        # layers: the release's for a 24-layer proxy; validated against the proxy's depth when extracted
        defaults={"checkpoint": -1, "layers": [3, 7, 11, 15, 19]},
        requires=("pool", "proxy_checkpoints"),
        extractor="selectbench.features.coincide:extract_shard",
    ),
}


def _identity(path: Path) -> dict[str, Any]:
    """What an input is: a file's sha256, and for the folders a JSON file names (checkpoint lists, warm-up and model
    records) the size and modification time of each file in them (re-training rewrites them); a folder's the same."""
    def stats(folder: Path) -> list:
        return sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file())

    path = Path(path)
    if path.is_dir():
        return {"path": str(path), "files": stats(path)}
    if not path.is_file():
        return {"path": str(path), "missing": True}
    raw = path.read_bytes()
    named: list[str] = []
    try:
        stack = [json.loads(raw)]
    except ValueError:
        stack = []
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += list(value.values())
        elif isinstance(value, list):
            stack += value
        elif isinstance(value, str) and Path(value).is_dir():
            named.append(value)
    return {"path": str(path), "sha256": hashlib.sha256(raw).hexdigest(),
            "folders": {d: stats(Path(d)) for d in sorted(set(named))}}


def job_fingerprint(job: ShardJob, feature: str) -> str:
    """Everything a shard job's output depends on: the feature and its spec, the model config, the shard plan, the
    pass's dtype, the pool's hash, its inputs' identities and the feature code's source. A killed job's parts are
    resumed only by a job with the same fingerprint (sharding.claim_parts)."""
    from selectbench.versions import source_digest

    payload = {"feature": feature, "spec": job.spec, "model": job.model_cfg, "shard": job.shard,
               "shards": job.shards, "batch_size": job.batch_size, "dtype": job.dtype,
               "pool": job.data.manifest.get("pool_sha256"),
               "inputs": {name: _identity(path) for name, path in sorted(job.inputs.items())},
               "code": source_digest("features", "models")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def with_plugins(methods: dict[str, Any]) -> dict[str, Feature]:
    """The built-in features and those method plug-ins declare (Method.features); a name may not be taken twice."""
    out = dict(FEATURES)
    for method in methods.values():
        for name, feature in getattr(method, "features", {}).items():
            if name in out and out[name] is not feature:
                raise ValueError(f"method {method.name!r} declares feature {name!r}, which another method or the "
                                 "suite already defines")
            out[name] = feature
    return out


def path_safe(value: Any) -> str:
    """A setting's value as a piece of a file name: lists joined by "+", anything but [A-Za-z0-9._+-] dropped."""
    if isinstance(value, (list, tuple)):
        return "+".join(path_safe(v) for v in value)
    return re.sub(r"[^A-Za-z0-9._+-]", "", str(value))


def spec_label(spec: dict[str, Any]) -> str:
    """A readable, path-safe name for a spec, e.g. attention-released_combine-sum_k-5_layers-all_svd-exact."""
    return "_".join(f"{k}-{path_safe(v)}" for k, v in sorted(spec.items())) or "default"
