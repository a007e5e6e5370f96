"""Per-rule cluster resources from the config: GPU rules on one node, retries that scale up to a cap, threads
shared among ranks, launchers."""

from __future__ import annotations

import pytest

from selectbench import cluster

RESOURCES = {"default": {"mem_mb": 1000, "runtime": 60, "cpus_per_task": 4},
             "rules": {"train_target": {"gpu": 8, "cpus_per_gpu": 6, "mem_mb": 8000, "runtime": 600},
                       "evaluate": {"gpu": 1, "cpus_per_gpu": 4},
                       "score": {"cpus_per_task": 16}},
             "retry_scale": {"mem_mb": 1.5, "runtime": 2.0},
             "retry_cap": {"mem_mb": 15000, "runtime": 1200}}


def test_gpu_rules_ask_cpus_per_gpu_not_per_task():
    spec = cluster.resource_spec(RESOURCES, "train_target")
    assert spec == {"mem_mb": 8000, "runtime": 600, "gpu": 8, "cpus_per_gpu": 6, "nodes": 1}
    assert cluster.resource_spec(RESOURCES, "select") == RESOURCES["default"]


def test_multi_gpu_rules_ask_for_one_node():
    assert cluster.resource_spec(RESOURCES, "train_target")["nodes"] == 1
    assert cluster.rule_resources(RESOURCES, "train_target")["nodes"] == 1
    assert "nodes" not in cluster.resource_spec(RESOURCES, "evaluate")
    two = {"rules": {"train_target": {"gpu": 8, "nodes": 2}}}
    with pytest.raises(ValueError, match="nodes must be 1"):
        cluster.resource_spec(two, "train_target")


def test_memory_and_runtime_grow_on_each_retry_up_to_their_cap():
    res = cluster.rule_resources(RESOURCES, "train_target")
    assert [res["mem_mb"](None, attempt) for attempt in (1, 2, 3, 4)] == [8000, 12000, 15000, 15000]
    assert [res["runtime"](None, attempt) for attempt in (1, 2, 3)] == [600, 1200, 1200]
    assert res["gpu"] == 8


def test_growth_without_a_cap_or_a_request_above_it_is_refused():
    uncapped = {**RESOURCES, "retry_cap": {"mem_mb": 15000}}
    with pytest.raises(ValueError, match="runtime without a resources.retry_cap"):
        cluster.rule_resources(uncapped, "train_target")
    low = {**RESOURCES, "retry_cap": {"mem_mb": 4000, "runtime": 1200}}
    with pytest.raises(ValueError, match="train_target asks for more than resources.retry_cap: mem_mb 8000 > 4000"):
        cluster.rule_resources(low, "train_target")
    assert cluster.rule_resources({}, "train_target") == {}   # the embedded default requests nothing


def test_threads_and_launcher():
    assert cluster.threads(RESOURCES, {"default": 2}, "train_target") == 48
    assert cluster.threads(RESOURCES, {"default": 2, "select": 1}, "score") == 16   # its cpus_per_task
    assert cluster.threads({}, {"default": 2, "select": 1}, "select") == 1
    assert cluster.launcher(RESOURCES, "train_target") == "torchrun --standalone --nproc_per_node=8"
    assert cluster.launcher(RESOURCES, "evaluate") == "python"  # one GPU: no launcher
    assert cluster.launcher({}, "train_target") == "python"      # the embedded default
    assert cluster.launcher(RESOURCES, "train_target", "accelerate launch --num_processes {gpus}") == \
        "accelerate launch --num_processes 8"


def test_each_rank_gets_its_share_of_the_jobs_threads():
    assert cluster.ranks(RESOURCES, "train_target") == 8
    assert cluster.ranks(RESOURCES, "evaluate") == cluster.ranks(RESOURCES, "score") == 1
    assert cluster.threads_per_process(48, cluster.ranks(RESOURCES, "train_target")) == 6
    assert cluster.threads_per_process(64, 8) == 8
    assert cluster.threads_per_process(2, 8) == 1    # never zero
    assert cluster.threads_per_process(16, 1) == 16


def test_a_rule_that_trains_must_ask_for_a_gpu_on_a_cluster():
    with pytest.raises(ValueError, match="resources.rules.base_model asks for no GPU"):
        cluster.require_gpu(RESOURCES, "base_model", "models.proxy.stage1 trains the proxy base")
    cluster.require_gpu(RESOURCES, "train_target", "fine-tuning")
    cluster.require_gpu({}, "base_model", "a laptop: nothing is requested")


def test_evaluate_runtime_is_sized_per_benchmark_and_grows_within_its_cap():
    """resources.evaluate_runtime: a per-task evaluate job asks for its benchmark's minutes (a job of several
    benchmarks, their sum; one not listed counts the rule's runtime), doubles on retries up to the cap, and a
    first request above the cap is refused."""
    sized = {**RESOURCES, "rules": {**RESOURCES["rules"], "evaluate": {"gpu": 1, "runtime": 240}},
             "evaluate_runtime": {"vqav2_val": 900, "mmvet": 60}}
    assert cluster.evaluate_runtime(RESOURCES, ["vqav2_val"]) is None  # no map: the rule's runtime
    assert cluster.evaluate_runtime(sized, ["vqav2_val"]) == 900
    assert cluster.evaluate_runtime(sized, ["pope"]) == 240
    assert cluster.evaluate_runtime(sized, ["vqav2_val", "mmvet", "pope"]) == 900 + 60 + 240
    minutes = {"vqav2_val": 900, "mmvet": 60}
    res = cluster.rule_resources(sized, "evaluate", per_job={"runtime": (lambda w: minutes[w.task],
                                                                         set(minutes.values()))})
    vqa, mmvet = type("W", (), {"task": "vqav2_val"})(), type("W", (), {"task": "mmvet"})()
    assert [res["runtime"](vqa, attempt) for attempt in (1, 2, 3)] == [900, 1200, 1200]
    assert [res["runtime"](mmvet, attempt) for attempt in (1, 2, 3)] == [60, 120, 240]
    with pytest.raises(ValueError, match="runtime 1300 > 1200"):
        cluster.rule_resources(sized, "evaluate", per_job={"runtime": (lambda w: 1300, {60, 1300})})
    with pytest.raises(ValueError, match="no runtime to fall back on"):
        cluster.evaluate_runtime({"evaluate_runtime": {"mmvet": 60}}, ["pope"])
