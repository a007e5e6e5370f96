import json
import math

import pandas as pd
import pytest

from selectbench.cli import main
from selectbench.report.costs import attach_relative, cost_summary, job_costs, to_markdown, write_costs

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
PRIMARY = {"pope": "f1", "gqa": "exact_match"}
FEATURE = "feature_proxy_token_stats_checkpoint--1"


def _job(name, stage, instance=None, ratio=None, seed=None, gpus=0):
    return {"job": name, "rule": name.split("_")[0], "gpus": gpus, "stage": stage, "instance": instance,
            "ratio": ratio, "seed": seed}


def _plan(gpus=(0, 0)):
    """full (ratio 1), random, and perplexity and el2n sharing one proxy fine-tune and token-statistics feature;
    perplexity at two seeds. gpus: (proxy fine-tune, target training)."""
    finetune, train = gpus
    shared = [_job("base_proxy", "shared"), _job("proxy_finetune", "shared", gpus=finetune),
              _job(f"{FEATURE}_shard0-of-2", "shared"), _job(f"{FEATURE}_shard1-of-2", "shared"),
              _job(f"{FEATURE}_gather", "shared")]
    jobs = [_job("prepare_data", "common"), _job("base_target", "common")]
    for label, needs, seeds, ratio in [("full", [], [0], 1.0), ("random", [], [0], 0.5),
                                       ("perplexity", shared, [0, 1], 0.5), ("el2n", shared, [0], 0.5)]:
        jobs += [{**j, "instance": label} for j in needs]
        jobs.append(_job(f"score_{label}", "score", label))
        r = f"{ratio:g}"
        for s in seeds:
            jobs += [_job(f"select_{label}_r{r}_s{s}", "select", label, ratio, s),
                     _job(f"train_target_{label}_r{r}_s{s}", "train", label, ratio, s, gpus=train),
                     _job(f"evaluate_{label}_r{r}_s{s}", "evaluate", label, ratio, s)]
    return {"dataset": "d", "reference": "full", "jobs": jobs}


WALL = {"prepare_data": 3, "base_target": 2, "base_proxy": 1, "proxy_finetune": 10, f"{FEATURE}_shard0-of-2": 4,
        f"{FEATURE}_shard1-of-2": 6, f"{FEATURE}_gather": 0.5, "score_full": 0.1, "score_random": 0.2,
        "score_perplexity": 0.3, "score_el2n": 0.4, "select_full_r1_s0": 0.1, "select_random_r0.5_s0": 0.2,
        "select_perplexity_r0.5_s0": 0.2, "select_perplexity_r0.5_s1": 0.4, "select_el2n_r0.5_s0": 0.1,
        "train_target_full_r1_s0": 100, "train_target_random_r0.5_s0": 50, "train_target_perplexity_r0.5_s0": 40,
        "train_target_perplexity_r0.5_s1": 60, "train_target_el2n_r0.5_s0": 45, "evaluate_full_r1_s0": 5,
        "evaluate_random_r0.5_s0": 5, "evaluate_perplexity_r0.5_s0": 5, "evaluate_perplexity_r0.5_s1": 5,
        "evaluate_el2n_r0.5_s0": 5}


@pytest.fixture
def records(tmp_path):
    """Snakemake benchmark files: cpu_time = 1.5 × wall."""
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    for name, s in WALL.items():
        (folder / f"{name}.tsv").write_text(HEADER + f"{s}\t0:00:01\t100.0\t200\t90\t95\t0\t0\t50\t{1.5 * s}\n")
    return folder


def _rows():
    rel = {("full", 1.0): (80, 40), ("random", 0.5): (40, 20), ("perplexity", 0.5): (60, 30),
           ("el2n", 0.5): (20, 10)}
    return [{"dataset": "d", "method": m, "ratio": r, "seed": s, "benchmark": b, "metric": PRIMARY[b],
             "value": v, "protocol": ""}
            for (m, r), values in rel.items() for s in ([0, 1] if m == "perplexity" else [0])
            for b, v in zip(PRIMARY, values)]


def _row(summary, method):
    return summary[summary["method"] == method].iloc[0]


def test_a_shared_feature_counts_in_full_for_every_instance_that_needs_it(records):
    jobs = job_costs(_plan()["jobs"], records)
    gather = jobs[jobs["job"] == f"{FEATURE}_gather"]
    assert sorted(gather["instance"]) == ["el2n", "perplexity"]
    summary = cost_summary(jobs, "full")
    shared = 1 + 10 + 4 + 6 + 0.5
    for method in ("perplexity", "el2n"):
        assert _row(summary, method)["shared_s"] == pytest.approx(shared)
        assert _row(summary, method)["shared_cpu_s"] == pytest.approx(1.5 * shared)
    assert _row(summary, "random")["shared_s"] == 0  # needs nothing shared: a true 0, not a missing one
    # the pool and the target base serve every run, the full-data training too: no instance pays them
    assert set(jobs[jobs["stage"] == "common"]["job"]) == {"prepare_data", "base_target"}
    assert _row(summary, "full")["selection_s"] == pytest.approx(0.1 + 0.1)


def test_selection_training_and_the_ratio_to_one_full_training(records):
    summary = cost_summary(job_costs(_plan()["jobs"], records), "full")
    ppl = _row(summary, "perplexity")
    selection = 21.5 + 0.3 + (0.2 + 0.4) / 2  # shared + score + one select step (mean over seeds)
    assert ppl["seeds"] == 2
    assert ppl["selection_s"] == pytest.approx(selection)
    assert ppl["train_s"] == pytest.approx(50)  # mean over the two seeds' trainings
    assert ppl["total_s"] == pytest.approx(selection + 50)
    assert ppl["evaluate_s"] == pytest.approx(5)
    assert ppl["selection_vs_full_s"] == pytest.approx(selection / 100)
    assert _row(summary, "random")["selection_vs_full_s"] == pytest.approx(0.4 / 100)
    # no job asked for a GPU: GPU-hours are 0 and their ratio is undefined, not 0
    assert ppl["total_gpu_h"] == 0 and math.isnan(ppl["selection_vs_full_gpu_h"])


def test_an_evaluation_split_into_per_task_jobs_costs_the_sum_of_its_jobs(records):
    """evaluation.jobs per_task: one evaluate job per benchmark (evaluate_<run>.<benchmark>); a seed's evaluation
    is the sum of its jobs, the mean over seeds as for every other stage; a missing part is NaN, never 0."""
    plan = _plan()
    parts = {"pope": 2.0, "gqa": 7.0}
    jobs = []
    for job in plan["jobs"]:
        if job["stage"] != "evaluate":
            jobs.append(job)
            continue
        for bench, seconds in parts.items():
            name = f"{job['job']}.{bench}"
            jobs.append({**job, "job": name})
            (records / f"{name}.tsv").write_text(
                HEADER + f"{seconds + job['seed']}\t0:00:01\t100.0\t200\t90\t95\t0\t0\t50\t1\n")
    summary = cost_summary(job_costs(jobs, records), "full")
    assert _row(summary, "random")["evaluate_s"] == pytest.approx(9.0)
    assert _row(summary, "perplexity")["evaluate_s"] == pytest.approx((9.0 + 11.0) / 2)  # seeds 0 and 1
    (records / "evaluate_el2n_r0.5_s0.gqa.tsv").unlink()
    summary = cost_summary(job_costs(jobs, records), "full")
    assert math.isnan(_row(summary, "el2n")["evaluate_s"])


def test_gpu_hours_are_wall_time_times_the_rule_gpus(records):
    summary = cost_summary(job_costs(_plan(gpus=(4, 8))["jobs"], records), "full")
    ppl = _row(summary, "perplexity")
    assert ppl["selection_gpu_h"] == pytest.approx(10 * 4 / 3600)  # only the proxy fine-tune uses GPUs
    assert ppl["train_gpu_h"] == pytest.approx(50 * 8 / 3600)
    assert ppl["selection_vs_full_gpu_h"] == pytest.approx((40 / 3600) / (800 / 3600))


def test_a_missing_record_is_nan_with_its_reason_never_zero(records):
    (records / "score_el2n.tsv").unlink()
    (records / f"{FEATURE}_gather.tsv").write_text("")
    (records / "select_random_r0.5_s0.tsv").write_text(HEADER + "0.2\t0:00:00\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n")
    summary = cost_summary(job_costs(_plan()["jobs"], records), "full")
    el2n = _row(summary, "el2n")
    assert math.isnan(el2n["score_s"]) and math.isnan(el2n["selection_s"]) and math.isnan(el2n["total_s"])
    assert math.isnan(el2n["selection_vs_full_s"])
    assert "score_el2n: no record" in el2n["missing"] and f"{FEATURE}_gather: unreadable record" in el2n["missing"]
    assert el2n["train_s"] == pytest.approx(45)  # the rest is still measured
    rnd = _row(summary, "random")  # a job too short to sample: its wall time counts, its CPU time is missing
    assert rnd["selection_s"] == pytest.approx(0.4) and math.isnan(rnd["selection_cpu_s"])
    assert "cpu_time not sampled" in rnd["missing"]
    md = to_markdown(attach_relative(summary, []), job_costs(_plan()["jobs"], records), "d", "full")
    assert "| el2n | 0.5 | 1 | n/a |" in md and "score_el2n: no record" in md


def test_tables_and_plot_with_relative_performance(records, tmp_path):
    from selectbench.report.tables import summarise

    entries = summarise(_rows(), "full", list(PRIMARY))
    summary = write_costs(_plan(), records, entries, tmp_path / "tables", tmp_path / "plots")
    assert _row(summary, "perplexity")["rel"] == pytest.approx(75.0)
    assert _row(summary, "full")["rel"] == pytest.approx(100.0)
    table = pd.read_csv(tmp_path / "tables" / "d_costs.csv")
    assert list(table["method"]) == ["el2n", "full", "perplexity", "random"]
    md = (tmp_path / "tables" / "d_costs.md").read_text()
    assert md.splitlines()[4].startswith("| full | 1 | 1 |")  # the reference first
    assert "counts in full for every method that needs it" in md and "no GPU-hours" in md
    assert "prepare_data 3.0 s" in md
    for ext in ("png", "pdf"):
        assert (tmp_path / "plots" / f"d_cost.{ext}").stat().st_size > 1000


def test_the_command_line(records, tmp_path):
    table = tmp_path / "d.csv"
    pd.DataFrame(_rows()).to_csv(table, index=False)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_plan(gpus=(4, 8))))
    main(["costs", "--table", str(table), "--plan", f"@{plan}", "--records", str(records), "--benchmarks", "pope",
          "gqa", "--tables", str(tmp_path / "t"), "--plots", str(tmp_path / "p")])
    md = (tmp_path / "t" / "d_costs.md").read_text()
    assert "total (GPU-h)" in md and "GPU-hours: wall time × the GPUs" in md
    assert (tmp_path / "p" / "d_cost.pdf").exists()
