"""Cluster resources of the DAG's rules, read from the config's `resources` block (the SLURM profile submits
with them; the embedded default sets none, so nothing is requested on a laptop)."""

from __future__ import annotations

from typing import Any, Callable

DEFAULT_LAUNCHER = "torchrun --standalone --nproc_per_node={gpus}"


def resource_spec(resources: dict[str, Any], rule: str) -> dict[str, Any]:
    """The default resources overlaid with the rule's own. A GPU rule asks for CPUs per GPU, so it does not
    inherit the default cpus_per_task (SLURM treats the two as exclusive, and cpus_per_task would win)."""
    own = resources.get("rules", {}).get(rule, {})
    spec = {**resources.get("default", {}), **own}
    if own.get("gpu") and "cpus_per_task" not in own:
        spec.pop("cpus_per_task", None)
    return spec


def scaled(value: int, factor: float) -> Callable[..., int]:
    """A Snakemake resource callable: value on the first attempt, × factor on each retry."""

    def on_attempt(wildcards, attempt: int) -> int:
        return int(value * factor ** (attempt - 1))

    return on_attempt


def rule_resources(resources: dict[str, Any], rule: str) -> dict[str, Any]:
    """Keyword arguments for a rule's `resources:` directive; keys named in retry_scale grow on retries."""
    scale = resources.get("retry_scale", {})
    return {key: scaled(value, scale[key]) if key in scale else value
            for key, value in resource_spec(resources, rule).items()}


def threads(resources: dict[str, Any], threads_cfg: dict[str, int], rule: str) -> int:
    """CPU threads of a job: GPUs × cpus_per_gpu on a GPU rule, else the `threads` setting."""
    spec = resource_spec(resources, rule)
    if spec.get("gpu"):
        return int(spec["gpu"]) * int(spec.get("cpus_per_gpu", 1))
    return threads_cfg.get(rule, threads_cfg["default"])


def launcher(resources: dict[str, Any], rule: str, template: str | None = None) -> str:
    """How a job starts Python: one process, or one per GPU through the launcher (torchrun by default; the
    Trainer then runs distributed data parallel)."""
    gpus = int(resource_spec(resources, rule).get("gpu", 0))
    return (template or DEFAULT_LAUNCHER).format(gpus=gpus) if gpus > 1 else "python"
