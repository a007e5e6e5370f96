"""The real lmms-eval harness on the embedded model: a tiny trained model, the embedded evaluation sets as local
lmms-eval tasks, one run of lmms-eval's CLI through evaluate_lmms (the paper path's runner and results parser),
and the same numbers as the built-in evaluator on the same predictions."""

import copy
import csv
import json
import re

import pytest

from selectbench.evaluation.lmms import LmmsConfig, collect, evaluate_lmms, find_results, parse_results, samples_path
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


def _by_metric(items: list[dict]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for r in items:
        out.setdefault((r["benchmark"], r["metric"]), []).append(r["value"])
    return out
