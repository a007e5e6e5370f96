"""Cluster resources of the DAG's rules, read from the config's `resources` block (the SLURM profile submits
with them; the embedded default sets none, so nothing is requested on a laptop)."""

from __future__ import annotations

from typing import Any, Callable

DEFAULT_LAUNCHER = "torchrun --standalone --nproc_per_node={gpus}"


def resource_spec(resources: dict[str, Any], rule: str) -> dict[str, Any]:
    """The default resources overlaid with the rule's own. A GPU rule asks for CPUs per GPU, so it does not
    inherit the default cpus_per_task (SLURM treats the two as exclusive, and cpus_per_task would win).
    A multi-GPU rule asks for one node: its launcher starts every rank on the node it runs on, and a bare
    `--gpus=N` lets SLURM spread the GPUs over several."""
    own = resources.get("rules", {}).get(rule, {})
    spec = {**resources.get("default", {}), **own}
    if own.get("gpu") and "cpus_per_task" not in own:
        spec.pop("cpus_per_task", None)
    if int(spec.get("gpu", 0)) > 1:
        if spec.get("nodes", 1) != 1:
            raise ValueError(f"resources.rules.{rule}: {spec['gpu']} GPUs on {spec['nodes']} nodes, but the "
                             "launcher starts all ranks on one node (nodes must be 1)")
        spec["nodes"] = 1
    return spec


def scaled(value: int | Callable[[Any], int], factor: float, cap: int | None = None) -> Callable[..., int]:
    """A Snakemake resource callable: value (or value(wildcards), for a resource that differs between a rule's
    jobs) on the first attempt, × factor on each retry, never above cap."""

    def on_attempt(wildcards, attempt: int) -> int:
        first = value(wildcards) if callable(value) else value
        grown = int(first * factor ** (attempt - 1))
        return grown if cap is None else min(grown, int(cap))

    return on_attempt


def evaluate_runtime(resources: dict[str, Any], benchmarks: list[str]) -> int | None:
    """Minutes of an evaluate job on these benchmarks: the sum of their resources.evaluate_runtime entries (a
    benchmark without one counts the rule's own runtime); None without that map (the rule's runtime applies).
    One job per model and benchmark (evaluation.jobs: per_task) then asks for what its benchmark needs: VQAv2 val
    is 214k answers, MM-Vet 218."""
    per = resources.get("evaluate_runtime") or {}
    if not per:
        return None
    default = resource_spec(resources, "evaluate").get("runtime")
    missing = [b for b in benchmarks if b not in per]
    if missing and default is None:
        raise ValueError(f"resources.evaluate_runtime has no entry for {missing} and resources.rules.evaluate no "
                         "runtime to fall back on")
    return int(sum(per.get(b, default) for b in benchmarks))


def rule_resources(resources: dict[str, Any], rule: str,
                   per_job: dict[str, tuple[Callable[[Any], int], set[int]]] | None = None) -> dict[str, Any]:
    """Keyword arguments for a rule's `resources:` directive. Keys named in retry_scale grow on retries up to
    their retry_cap (the largest node or the partition's time limit: a request above it would never start);
    every scaled key needs a cap, and no first request may exceed it. per_job: {key: (function of a job's
    wildcards, every value it takes)} for a resource that differs between the rule's jobs (evaluate's runtime per
    benchmark); each of those values is held to the cap as well."""
    scale = resources.get("retry_scale", {})
    cap = resources.get("retry_cap", {})
    uncapped = sorted(set(scale) - set(cap))
    if uncapped:
        raise ValueError(f"resources.retry_scale grows {', '.join(uncapped)} without a resources.retry_cap")
    spec = resource_spec(resources, rule)
    over = {key: max(values) for key, (_, values) in (per_job or {}).items()
            if key in cap and values and max(values) > cap[key]}
    for key, (value, _) in (per_job or {}).items():
        spec[key] = value
    over.update({key: value for key, value in spec.items()
                 if key in cap and not callable(value) and value > cap[key]})
    if over:
        raise ValueError(f"resources.rules.{rule} asks for more than resources.retry_cap: "
                         + ", ".join(f"{key} {value} > {cap[key]}" for key, value in over.items()))
    return {key: scaled(value, scale[key], cap[key]) if key in scale else value for key, value in spec.items()}


def threads(resources: dict[str, Any], threads_cfg: dict[str, int], rule: str) -> int:
    """CPU threads of a job: what it is allocated (GPUs × cpus_per_gpu on a GPU rule, cpus_per_task on a CPU
    rule), else the `threads` setting."""
    spec = resource_spec(resources, rule)
    if spec.get("gpu"):
        return int(spec["gpu"]) * int(spec.get("cpus_per_gpu", 1))
    if spec.get("cpus_per_task"):
        return int(spec["cpus_per_task"])
    return threads_cfg.get(rule, threads_cfg["default"])


def require_gpu(resources: dict[str, Any], rule: str, why: str) -> None:
    """Refuse a cluster config whose rule asks for no GPU while the config makes it train (it would run for days
    on CPUs). Without GPU rules anywhere (a laptop), nothing is required."""
    uses_gpus = any(spec.get("gpu") for spec in resources.get("rules", {}).values())
    if uses_gpus and not resource_spec(resources, rule).get("gpu"):
        raise ValueError(f"{why}, but resources.rules.{rule} asks for no GPU: give it a gpu and cpus_per_gpu")


def ranks(resources: dict[str, Any], rule: str) -> int:
    """Processes a job starts: one per GPU through the launcher on a multi-GPU rule, else one."""
    return max(1, int(resource_spec(resources, rule).get("gpu", 0)))


def threads_per_process(threads: int, processes: int) -> int:
    """Torch threads of each process: the job's CPUs shared among its ranks (each rank setting the job's
    whole count oversubscribes the node's cores ranks-fold)."""
    return max(1, int(threads) // max(1, int(processes)))


def launcher(resources: dict[str, Any], rule: str, template: str | None = None) -> str:
    """How a job starts Python: one process, or one per GPU through the launcher (torchrun by default; the
    Trainer then runs distributed data parallel)."""
    gpus = int(resource_spec(resources, rule).get("gpu", 0))
    return (template or DEFAULT_LAUNCHER).format(gpus=gpus) if gpus > 1 else "python"
