"""Per-rule cluster resources from the config: GPU rules, retries that scale, launchers."""

from __future__ import annotations

from selectbench import cluster

RESOURCES = {"default": {"mem_mb": 1000, "runtime": 60, "cpus_per_task": 4},
             "rules": {"train_target": {"gpu": 8, "cpus_per_gpu": 6, "mem_mb": 8000, "runtime": 600},
                       "evaluate": {"gpu": 1, "cpus_per_gpu": 4}},
             "retry_scale": {"mem_mb": 1.5, "runtime": 2.0}}


def test_gpu_rules_ask_cpus_per_gpu_not_per_task():
    spec = cluster.resource_spec(RESOURCES, "train_target")
    assert spec == {"mem_mb": 8000, "runtime": 600, "gpu": 8, "cpus_per_gpu": 6}
    assert cluster.resource_spec(RESOURCES, "select") == RESOURCES["default"]


def test_memory_and_runtime_grow_on_each_retry():
    res = cluster.rule_resources(RESOURCES, "train_target")
    assert [res["mem_mb"](None, attempt) for attempt in (1, 2, 3)] == [8000, 12000, 18000]
    assert [res["runtime"](None, attempt) for attempt in (1, 2)] == [600, 1200]
    assert res["gpu"] == 8


def test_threads_and_launcher():
    assert cluster.threads(RESOURCES, {"default": 2}, "train_target") == 48
    assert cluster.threads(RESOURCES, {"default": 2, "select": 1}, "select") == 1
    assert cluster.launcher(RESOURCES, "train_target") == "torchrun --standalone --nproc_per_node=8"
    assert cluster.launcher(RESOURCES, "evaluate") == "python"  # one GPU: no launcher
    assert cluster.launcher({}, "train_target") == "python"      # the embedded default
    assert cluster.launcher(RESOURCES, "train_target", "accelerate launch --num_processes {gpus}") == \
        "accelerate launch --num_processes 8"
