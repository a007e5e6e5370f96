"""The real lmms-eval harness on the embedded model: a tiny trained model, the embedded evaluation sets as local
lmms-eval tasks, one run of lmms-eval's CLI through evaluate_lmms (the paper path's runner and results parser),
and the same numbers as the built-in evaluator on the same predictions."""

import copy
import csv
import json
import re
import shutil

import pytest

from selectbench.evaluation import responses
from selectbench.evaluation.lmms import (
    LmmsConfig, LmmsEvalError, collect, evaluate_lmms, find_results, parse_results, samples_path,
)
from selectbench.evaluation.lmms_tasks import SAME_NUMBERS, write_local_tasks
from selectbench.evaluation.run import evaluate
from selectbench.embedded.tokenizer import build_tokenizer
from selectbench.training.stages import finetune, train_base

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install -e '.[lmms]', see README)")

BENCHMARKS = ["pope", "textvqa", "vqav2", "gqa", "mmbench"]
KEY = {"dataset": "digits", "method": "full", "ratio": 1.0, "seed": 0}


@pytest.fixture(scope="module")
def model_cfg(tiny_config):
    cfg = copy.deepcopy(tiny_config["models"]["target"])
    cfg["recipe"]["stage1"]["epochs"] = 2
    cfg["finetune"].update(epochs=8, lr=1e-2)  # a few seconds; enough for mixed yes/no and some right answers
    return cfg


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_data, tiny_config, model_cfg):
    out = tmp_path_factory.mktemp("lmms_model")
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], out / "tokenizer")
    train_base(tiny_data, out / "tokenizer", model_cfg, 0, out / "base", 1)
    finetune(tiny_data, out / "base", None, model_cfg, 0, out / "ft", 1)
    return out / "ft" / "model"


@pytest.fixture(scope="module")
def local(tmp_path_factory, tiny_data, tiny_model, model_cfg):
    """Local task folder, and the built-in evaluator's rows and predictions on the same sets."""
    work = tmp_path_factory.mktemp("lmms_run")
    specs = write_local_tasks(tiny_data, BENCHMARKS, work / "tasks")
    # batch size 1: lmms-eval passes --batch_size 1 to the model, so both sides compute exactly the same
    builtin = evaluate(tiny_model, tiny_data, BENCHMARKS + ["mmvet"], model_cfg["template"], KEY,
                       work / "builtin.csv", work / "builtin.json", batch_size=1, threads=1,
                       items_out=work / "builtin.items.csv")
    builtin = [r for r in builtin if r["benchmark"] in BENCHMARKS]
    return {"work": work, "specs": specs, "rows": builtin, "predictions": json.loads((work / "builtin.json").read_text())}


def test_builtin_per_item_scores_recompute_every_primary_metric(local, tiny_data):
    """The items file holds, per item, what each benchmark's number is computed from: means of the item rows give
    the mean metrics, and POPE's F1 comes back from the predicted/label indicators."""
    with open(local["work"] / "builtin.items.csv", newline="") as fh:
        items = list(csv.DictReader(fh))
    rows = {(r["benchmark"], r["metric"]): r["value"]
            for r in csv.DictReader(open(local["work"] / "builtin.csv", newline=""))}
    by = _by_metric([{**r, "value": float(r["value"])} for r in items])
    for bench, metric in [("textvqa", "vqa_accuracy"), ("vqav2", "vqa_accuracy"), ("gqa", "exact_match"),
                          ("mmbench", "circular_accuracy"), ("mmbench", "vanilla_accuracy"), ("pope", "accuracy"),
                          ("mmvet", "judge_score")]:
        values = by[(bench, metric)]
        assert len(values) == len(tiny_data.eval_items(bench)), (bench, metric)
        assert sum(values) / len(values) == pytest.approx(float(rows[(bench, metric)]), abs=1e-3), (bench, metric)
    pred, gold = by[("pope", "predicted_yes")], by[("pope", "label_yes")]
    tp = sum(p * g for p, g in zip(pred, gold))
    f1 = 200 * tp / (sum(pred) + sum(gold)) if sum(pred) + sum(gold) else 0.0
    assert f1 == pytest.approx(float(rows[("pope", "f1")]), abs=1e-3)
    assert {r["item"] for r in items if r["benchmark"] == "gqa"} == {it["id"] for it in tiny_data.eval_items("gqa")}


@pytest.fixture(scope="module")
def both(local, tiny_model, model_cfg):
    """(built-in rows, built-in predictions, lmms-eval rows, lmms-eval predictions, specs, lmms-eval csv)."""
    work, specs = local["work"], local["specs"]
    template = work / "template.json"  # the template block, as the selectbench lmms-eval model reads it
    template.write_text(json.dumps(model_cfg["template"]))
    cfg = {"model": "selectbench", "model_args": {"template": str(template), "threads": 1},
           "include_path": str(work / "tasks"), "max_empty_fraction": 0.0}
    rows = evaluate_lmms(tiny_model, list(specs), cfg, KEY, work / "lmms.csv", work / "lmms.json", specs)
    return (local["rows"], local["predictions"], rows, json.loads((work / "lmms.json").read_text()), specs,
            work / "lmms.csv")


def test_lmms_eval_numbers_equal_the_builtin_evaluator(both):
    builtin, _, rows, _, _, _ = both
    ours = {(r["benchmark"], r["metric"]): r["value"] for r in builtin}
    theirs = {(r["benchmark"], r["metric"]): r["value"] for r in rows}
    compared = {k: (ours[k], theirs[v]) for k, v in SAME_NUMBERS.items()}
    assert all(a == pytest.approx(b, abs=1e-4) for a, b in compared.values()), compared
    # not a comparison of zeros: POPE has both answers, VQAv2-like soft accuracy is partly right
    assert 0 < compared[("pope", "f1")][0] < 100 and 0 < compared[("vqav2", "vqa_accuracy")][0] < 100


def test_same_predictions_item_by_item(both):
    _, ours, _, theirs, _, _ = both
    for bench in ("pope", "textvqa", "vqav2", "gqa"):
        assert [p["output"] for p in theirs[f"selectbench_{bench}"]] == [p["output"] for p in ours[bench]], bench
    # multiple_choice: one log-likelihood per option and rotation, in the built-in evaluator's order
    lls = [float(re.match(r"\(([-\d.e]+),", o).group(1)) for p in theirs["selectbench_mmbench"] for o in p["output"]]
    assert lls == pytest.approx([p["output"] for p in ours["mmbench"]], abs=1e-5)


def test_results_file_in_lmms_eval_layout_parses_to_the_rows(both):
    _, _, rows, _, specs, out_csv = both
    results = find_results(out_csv.with_suffix(".lmms"))
    assert re.fullmatch(r"\d{8}_\d{6}_results\.json", results.name) and results.parent.name.endswith("__model")
    assert all(samples_path(results, t).exists() for t in specs)
    parsed = parse_results(results, list(specs), specs)
    assert {(r["benchmark"], r["metric"]): r["value"] for r in rows if r["metric"] in specs[r["benchmark"]].metrics} \
        == {(t, m): round(v, 4) for t, values in parsed.items() for m, v in values.items()}
    # the rows are what collect() makes of that file: counts, no empty answer, the protocol label
    again, _, items = collect(results, list(specs), LmmsConfig(), KEY, "0.7.3", specs)
    assert again == rows
    # per-item scores, where lmms-eval logs them, average to the task's number; POPE's F1 comes back from its
    # yes/no indicators (item rows only)
    by = _by_metric(items)
    for (task, metric), values in by.items():
        if metric in ("predicted_yes", "label_yes"):
            continue
        value = next(r["value"] for r in rows if r["benchmark"] == task and r["metric"] == metric)
        assert sum(values) / len(values) == pytest.approx(value, abs=1e-3), (task, metric)
    pred, gold = by[("selectbench_pope", "predicted_yes")], by[("selectbench_pope", "label_yes")]
    tp = sum(p * g for p, g in zip(pred, gold))
    f1 = 200 * tp / (sum(pred) + sum(gold)) if sum(pred) + sum(gold) else 0.0
    assert f1 == pytest.approx(next(r["value"] for r in rows if r["benchmark"] == "selectbench_pope"
                                    and r["metric"] == "pope_f1_score"), abs=1e-3)
    assert {t for t, _ in _by_metric(items)} >= {"selectbench_textvqa", "selectbench_vqav2", "selectbench_gqa"}
    counts = {r["benchmark"]: r["value"] for r in rows if r["metric"] == "samples"}
    assert counts["selectbench_pope"] > 0 and counts["selectbench_mmbench"] % 4 == 0
    assert all(r["value"] == 0 for r in rows if r["metric"] == "empty_answers")
    assert all(r["protocol"].startswith("lmms-eval 0.7.3: ") for r in rows)


def test_llava_hf_adapter_on_the_saved_model_gives_the_same_numbers(local, tiny_model):
    """The paper path's adapter: lmms-eval's own llava_hf loads the saved model with its LlavaProcessor and chat
    template (our vicuna_v1 prompt) and answers exactly as the built-in evaluator does."""
    pytest.importorskip("decord", reason="lmms-eval's llava_hf imports decord")
    tasks = [f"selectbench_{b}" for b in ("pope", "textvqa", "vqav2", "gqa")]
    cfg = {"model": "llava_hf", "model_args": {"device": "cpu", "device_map": "cpu"},
           "include_path": str(local["work"] / "tasks"), "max_empty_fraction": 0.0}
    out = local["work"] / "llava_hf"
    rows = evaluate_lmms(tiny_model, tasks, cfg, KEY, out / "rows.csv", out / "predictions.json", local["specs"])
    theirs = {(r["benchmark"], r["metric"]): r["value"] for r in rows}
    ours = {(r["benchmark"], r["metric"]): r["value"] for r in local["rows"]}
    for (bench, metric), target in SAME_NUMBERS.items():
        if target[0] in tasks:
            assert theirs[target] == pytest.approx(ours[(bench, metric)], abs=1e-4), (bench, metric)
    predictions = json.loads((out / "predictions.json").read_text())
    for task in tasks:
        bench = task.removeprefix("selectbench_")
        assert [p["output"] for p in predictions[task]] == [p["output"] for p in local["predictions"][bench]], task


def _selectbench_cfg(local, model_cfg, **extra) -> dict:
    template = local["work"] / "template.json"
    template.write_text(json.dumps(model_cfg["template"]))
    return {"model": "selectbench", "model_args": {"template": str(template), "threads": 1},
            "include_path": str(local["work"] / "tasks"), "max_empty_fraction": 0.0, **extra}


def test_a_run_killed_mid_way_resumes_from_its_stored_answers(local, tiny_model, model_cfg, monkeypatch):
    """Every answer is stored as it is given (<out>.responses/); a rerun after a kill asks the model only for what
    is missing and writes the same rows, answers and item scores as an uninterrupted run."""
    monkeypatch.setenv(responses.CHUNK_ENV, "4")
    work, specs = local["work"], local["specs"]
    tasks = ["selectbench_vqav2", "selectbench_gqa", "selectbench_mmbench"]  # generations and log-likelihoods
    cfg = _selectbench_cfg(local, model_cfg)
    whole = evaluate_lmms(tiny_model, tasks, cfg, KEY, work / "whole.csv", work / "whole.json", specs,
                          items_out=work / "whole.items.csv")
    stored = (work / "whole.responses" / "responses.rank0.jsonl").read_text().splitlines(keepends=True)
    assert len(stored) == sum(r["value"] for r in whole if r["metric"] == "samples" and r["benchmark"] != tasks[2]) \
        + 4 * next(r["value"] for r in whole if r["metric"] == "samples" and r["benchmark"] == tasks[2])  # 4 options
    assert "0 answers reused" in (work / "whole.lmms" / "lmms_eval.log").read_text()

    # what a kill leaves: the store of the run so far, its last line cut short
    killed = work / "killed.responses"
    shutil.copytree(work / "whole.responses", killed)
    (killed / "responses.rank0.jsonl").write_text("".join(stored[:10]) + stored[10][:30])
    resumed = evaluate_lmms(tiny_model, tasks, cfg, KEY, work / "killed.csv", work / "killed.json", specs,
                            items_out=work / "killed.items.csv")
    log_text = (work / "killed.lmms" / "lmms_eval.log").read_text()
    assert f"8 answers reused, {len(stored) - 8} asked of the model" in log_text  # two whole chunks of four
    assert resumed == whole
    assert (work / "killed.json").read_text() == (work / "whole.json").read_text()
    assert (work / "killed.items.csv").read_text() == (work / "whole.items.csv").read_text()


def test_an_opt_in_subsample_is_labelled_in_the_protocol_and_the_tables(local, tiny_model, model_cfg):
    """evaluation.lmms_eval.limit: lmms-eval's --limit, its first N documents; the rows, the item scores and the
    tables say so, and a limited run without the setting is still refused."""
    from selectbench.report.tables import summarise, to_markdown

    work, specs = local["work"], local["specs"]
    task = "selectbench_vqav2"
    total = len(json.loads((work / "builtin.json").read_text())["vqav2"])
    cfg = _selectbench_cfg(local, model_cfg, limit={task: 5})
    rows = evaluate_lmms(tiny_model, [task], cfg, KEY, work / "limited.csv", work / "limited.json", specs,
                         items_out=work / "limited.items.csv")
    label = f"subsample: first 5 of {total} documents (lmms-eval --limit)"
    assert total > 5 and all(label in r["protocol"] for r in rows)
    assert {r["metric"]: r["value"] for r in rows}["samples"] == 5
    with open(work / "limited.items.csv", newline="") as fh:
        assert len({r["item"] for r in csv.DictReader(fh)}) == 5
    assert len(json.loads((work / "limited.json").read_text())[task]) == 5
    # the tables print each benchmark's protocol (here the rows stand in for vqav2_val's, whose spec the tables know)
    table = [{**r, "method": m, "ratio": ratio, "benchmark": "vqav2_val"} for m, ratio in (("full", 1.0),
                                                                                         ("random", 0.1))
             for r in rows if r["metric"] == specs[task].primary]
    assert label in to_markdown(summarise(table, "full", ["vqav2_val"], chance_margin=0), ["vqav2_val"], "digits")
    with pytest.raises(LmmsEvalError, match="5 of"):
        collect(find_results(work / "limited.lmms"), [task], LmmsConfig(), KEY, "0.7.3", specs)
    with pytest.raises(ValueError, match="evaluation.jobs: per_task"):
        evaluate_lmms(tiny_model, [task, "selectbench_gqa"], cfg, KEY, work / "x.csv", work / "x.json", specs)


def _by_metric(items: list[dict]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for r in items:
        out.setdefault((r["benchmark"], r["metric"]), []).append(r["value"])
    return out
