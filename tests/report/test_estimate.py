"""GPU-hour estimates before a run: each rule's work priced by hand on a small plan."""

import math

import pytest

from selectbench.report.estimate import job_estimates, markdown, scaling, trajectory_points

CONFIG = {
    "gpu_estimate": {
        "gpu": "test GPU",
        "datasets": {"d": {"examples": 1000, "tokens_per_example": 100}},
        "throughput": {"target_train": {"tokens_per_s": 10}, "proxy_train": {"tokens_per_s": 20},
                       "proxy_forward": {"tokens_per_s": 50}, "clip_forward": {"examples_per_s": 2},
                       "generate": {"answers_per_s": 5}, "generate_long": {"answers_per_s": 0.5}},
        "eval_items": {"pope": 50, "vqav2_val": 100, "mmvet": 10},
        "long_answers": ["mmvet"],
        "feature_work": {"attention_trajectories": {"figure": "proxy_forward", "per_checkpoint": True},
                         "clip_score": {"figure": "clip_forward"}},
    },
    "models": {"proxy": {"finetune": {"global_batch": 32, "epochs": 1, "save_steps": 10}},
               "target": {"finetune": {"epochs": 1}}},
    "gradient_warmup": {"fraction": 0.05, "epochs": 2},
    "features": {"shards": 4},
    "datasets": {"d": {"benchmarks": ["pope", "vqav2_val", "mmvet"]}},
    "evaluation": {"lmms_eval": {"limit": {"vqav2_val": 40}}},
}


def _job(name, rule, stage, gpus=1, **extra):
    return {"job": name, "rule": rule, "stage": stage, "gpus": gpus, **extra}


PLAN = {"dataset": "d", "reference": "full", "jobs": [
    _job("prepare_data", "prepare_data", "common", gpus=0),
    _job("proxy_finetune", "proxy_finetune", "shared", instance="xmas"),
    _job("feature_attention_trajectories_x_shard0-of-4", "feature_shard", "shared", instance="xmas",
         feature="attention_trajectories"),
    _job("feature_clip_score_default_shard0-of-4", "feature_shard", "shared", instance="clip", feature="clip_score"),
    _job("feature_new_default_shard0-of-4", "feature_shard", "shared", instance="new", feature="new"),
    _job("gradient_warmup", "gradient_warmup", "shared", instance="gradient"),
    _job("score_xmas", "score", "score", gpus=0, instance="xmas"),
    _job("train_target_xmas_r0.1_s0", "train_target", "train", gpus=8, instance="xmas", ratio=0.1, seed=0),
    _job("evaluate_xmas_r0.1_s0.vqav2_val", "evaluate", "evaluate", instance="xmas", ratio=0.1, seed=0),
    _job("evaluate_xmas_r0.1_s0.mmvet", "evaluate", "evaluate", instance="xmas", ratio=0.1, seed=0),
    _job("train_target_full_r1_s0", "train_target", "train", gpus=8, instance="full", ratio=1.0, seed=0),
    _job("evaluate_full_r1_s0", "evaluate", "evaluate", instance="full", ratio=1.0, seed=0),
    _job("mystery", "mystery_rule", "shared", instance="xmas"),
]}


def test_trajectory_points_follow_the_training_cadence():
    released = {"global_batch": 32, "epochs": 1, "save_steps": 200}
    assert trajectory_points(released, 665_298) == 104   # 20,791 steps: 103 every 200 and the last
    assert trajectory_points(released, 186_000) == 30
    assert trajectory_points({"global_batch": 32, "epochs": 1, "checkpoints": 10}, 665_298) == 10


def test_each_rule_is_priced_from_its_work_and_figure():
    jobs = job_estimates(PLAN, CONFIG).set_index("job")
    hours = jobs.gpu_hours
    tokens = 1000 * 100
    points = trajectory_points(CONFIG["models"]["proxy"]["finetune"], 1000)   # 32 steps, every 10: 4
    assert points == 4
    assert hours["prepare_data"] == 0 and hours["score_xmas"] == 0            # no GPU asked for
    assert hours["proxy_finetune"] == pytest.approx(tokens / 20 / 3600)
    assert hours["feature_attention_trajectories_x_shard0-of-4"] == pytest.approx(tokens / 4 * points / 50 / 3600)
    assert hours["feature_clip_score_default_shard0-of-4"] == pytest.approx(1000 / 4 / 2 / 3600)  # examples/s
    assert hours["gradient_warmup"] == pytest.approx(tokens * 0.05 * 2 / 20 / 3600)
    assert hours["train_target_xmas_r0.1_s0"] == pytest.approx(0.1 * tokens / 10 / 3600)  # GPU count: no effect
    assert hours["evaluate_xmas_r0.1_s0.vqav2_val"] == pytest.approx(40 / 5 / 3600)      # the limit applies
    assert jobs.work["evaluate_xmas_r0.1_s0.vqav2_val"] == 40
    assert hours["evaluate_xmas_r0.1_s0.mmvet"] == pytest.approx(10 / 0.5 / 3600)        # long answers
    assert hours["evaluate_full_r1_s0"] == pytest.approx((50 / 5 + 40 / 5 + 10 / 0.5) / 3600)  # every task
    for job in ("feature_new_default_shard0-of-4", "mystery"):                 # missing, never a silent 0
        assert math.isnan(hours[job]) and jobs.note[job]


def test_scaling_and_markdown_say_what_a_seed_ratio_or_method_adds():
    jobs = job_estimates(PLAN, CONFIG)
    sc = scaling(jobs, PLAN)
    full, evaluation = 100_000 / 10 / 3600, (50 / 5 + 40 / 5 + 10 / 0.5) / 3600
    assert sc["full_training"] == pytest.approx(full) and sc["evaluation_per_model"] == pytest.approx(evaluation)
    assert sc["per_seed"] == pytest.approx(0.1 * full + evaluation)   # one method, one ratio
    assert sc["per_ratio_0.1"] == pytest.approx(0.1 * full + evaluation)
    text = markdown(jobs, [PLAN], CONFIG)
    assert f"**Total: {jobs.gpu_hours.sum():,.0f} GPU-hours**" in text
    assert "## Not estimated" in text and "mystery" in text
    assert "4 checkpoints" in text


def test_a_dataset_without_figures_is_an_error():
    with pytest.raises(ValueError, match="gpu_estimate.datasets has no entry for dataset 'other'"):
        job_estimates({**PLAN, "dataset": "other"}, {**CONFIG, "datasets": {"other": {"benchmarks": []}}})


def test_training_on_the_whole_pool_to_select_is_priced_as_a_full_training():
    """Self-Filter's stage 1 and the full-data target's statistics pass (HL / MP as the XMAS paper scores them)."""
    config = {**CONFIG, "gpu_estimate": {
        **CONFIG["gpu_estimate"],
        "throughput": {**CONFIG["gpu_estimate"]["throughput"], "target_forward": {"tokens_per_s": 40}},
        "feature_work": {**CONFIG["gpu_estimate"]["feature_work"],
                         "target_token_stats": {"figure": "target_forward"}}}}
    plan = {"dataset": "d", "reference": "full", "jobs": [
        _job("self_filter_train", "self_filter_train", "shared", gpus=8, instance="self_filter"),
        _job("train_target_full_r1_s0", "train_target", "shared", gpus=8, instance="hl"),
        _job("feature_target_token_stats_default_shard0-of-4", "feature_shard", "shared", instance="hl",
             feature="target_token_stats")]}
    hours = job_estimates(plan, config).set_index("job").gpu_hours
    tokens = 1000 * 100
    assert hours["self_filter_train"] == pytest.approx(tokens / 10 / 3600)
    assert hours["train_target_full_r1_s0"] == pytest.approx(tokens / 10 / 3600)   # a shared job: ratio 1
    assert hours["feature_target_token_stats_default_shard0-of-4"] == pytest.approx(tokens / 4 / 40 / 3600)
