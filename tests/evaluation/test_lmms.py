"""The lmms-eval path without running lmms-eval: command, refusals, results-file parsing, scales, empty answers,
and lmms-eval rows through the report tables (protocol labels)."""

import json
import sys
from pathlib import Path

import pytest

from selectbench.evaluation import lmms
from selectbench.evaluation.lmms import (
    TASKS,
    Judge,
    LmmsConfig,
    LmmsEvalError,
    build_command,
    check_model_dir,
    check_tasks,
    collect,
    evaluate_lmms,
    find_results,
    parse_results,
)

KEY = {"dataset": "llava665k", "method": "random", "ratio": 0.1, "seed": 0}


def _results_dir(tmp_path: Path, results: dict, samples: dict[str, list], n_samples: dict | None = None) -> Path:
    """A run folder in lmms-eval's layout: <output>/<model name>/<date>_results.json and _samples_<task>.jsonl."""
    folder = tmp_path / "out" / "work__model"
    folder.mkdir(parents=True)
    date = "20260101_120000"
    body = {"results": results, "lmms_eval_version": "unknown@unknown",
            "n-samples": n_samples or {t: {"original": len(s), "effective": len(s)} for t, s in samples.items()}}
    (folder / f"{date}_results.json").write_text(json.dumps(body))
    for task, rows in samples.items():
        (folder / f"{date}_samples_{task}.jsonl").write_text(
            "".join(json.dumps({"doc_id": i, "target": "x", "filtered_resps": r}) + "\n" for i, r in enumerate(rows)))
    return folder / f"{date}_results.json"


def test_command_is_lmms_eval_cli_with_batch_1_logged_samples_and_no_device(tmp_path):
    cfg = LmmsConfig(model_args={"dtype": "bfloat16", "attn_implementation": "sdpa"})
    cmd = build_command(tmp_path / "model", ["pope", "vqav2_val"], cfg, tmp_path / "out")
    assert cmd[:3] == [sys.executable, "-m", "selectbench.evaluation.lmms_model"]
    flags = cmd[3:]
    assert flags[flags.index("--model") + 1] == "llava_hf"
    assert flags[flags.index("--tasks") + 1] == "pope,vqav2_val"
    assert flags[flags.index("--batch_size") + 1] == "1"
    assert flags[flags.index("--output_path") + 1] == str(tmp_path / "out")
    assert "--log_samples" in flags and "--include_path" not in flags
    model_args = flags[flags.index("--model_args") + 1]
    assert model_args == f"pretrained={(tmp_path / 'model').resolve()},attn_implementation=sdpa,dtype=bfloat16"
    assert "device" not in " ".join(cmd)
    assert flags[flags.index("--gen_kwargs") + 1] == "temperature=0"  # greedy for every task, mmvet included
    assert "--gen_kwargs" not in build_command(tmp_path / "m", ["t"], LmmsConfig(gen_kwargs={}), tmp_path / "o")
    with_tasks = build_command(tmp_path / "m", ["t"], LmmsConfig(include_path="/tasks"), tmp_path / "o")
    assert with_tasks[-2:] == ["--include_path", "/tasks"]


@pytest.mark.parametrize("args, match", [({"batch_size": 4}, "batch_size 1"),
                                         ({"pretrained": "x"}, "model directory"), ({"dtype": "a,b"}, "splits")])
def test_model_args_that_would_break_or_override_the_run_are_refused(tmp_path, args, match):
    with pytest.raises(ValueError, match=match):
        build_command(tmp_path, ["pope"], LmmsConfig(model_args=args), tmp_path / "out")


def test_config_block_is_validated():
    cfg = LmmsConfig.from_dict({"judge": {"model": "gpt-4o-2024-11-20"}, "max_empty_fraction": 0.05,
                                "model_args": {"device_map": "auto"}})
    assert cfg.judge == Judge(model="gpt-4o-2024-11-20") and cfg.offline and cfg.model == "llava_hf"
    with pytest.raises(ValueError, match="unknown keys \\['judge_model'\\]"):
        LmmsConfig.from_dict({"judge_model": "x"})
    with pytest.raises(ValueError, match="max_empty_fraction"):
        LmmsConfig.from_dict({"max_empty_fraction": 1.5, "model": "selectbench"})
    with pytest.raises(ValueError, match="at least model"):
        LmmsConfig.from_dict({"judge": "gpt-4o"})


def test_llava_hf_without_device_map_is_refused():
    """llava_hf's default device_map "" makes transformers 5 from_pretrained raise in every evaluate job."""
    for block in ({}, {"model_args": {"dtype": "bfloat16"}}, {"model_args": {"device_map": ""}}):
        with pytest.raises(ValueError, match="device_map is not set"):
            LmmsConfig.from_dict(block)
    LmmsConfig.from_dict({"model": "selectbench"})  # other models: their own arguments


def test_paper_model_args_load_through_llava_hf_on_cpu(tmp_path):
    """config/paper.yaml's model_args, as the suite passes them (lmms-eval's own argument string and llava_hf
    class), load a saved LLaVA in transformers 5; only the input device is moved to the CPU."""
    pytest.importorskip("decord", reason="lmms-eval's llava_hf imports decord")
    import shutil

    import torch
    import yaml
    from lmms_eval.models import get_model

    block = yaml.safe_load((Path(__file__).parents[2] / "config" / "paper.yaml").read_text())["evaluation"]
    cfg = LmmsConfig.from_dict(block["lmms_eval"])
    assert cfg.model == "llava_hf" and "device" not in cfg.model_args
    model_dir = tmp_path / "model"  # a saved LLaVA with its processor and chat template, random-scale
    shutil.copytree(Path(lmms.__file__).parents[1] / "embedded" / "pretrained" / "target", model_dir)
    on_cpu = LmmsConfig(model=cfg.model, model_args={**cfg.model_args, "device": "cpu"})
    lm = get_model(cfg.model).create_from_arg_string(lmms.model_args(model_dir, on_cpu))
    assert lm.model.dtype == getattr(torch, cfg.model_args["dtype"]) and lm.model.device.type == "cpu"


@pytest.mark.parametrize("task, hint", [("mmvet", "none"), ("mmbench_en_dev", "mmbench_en_dev_static"),
                                        ("mmbench_cn_dev", "no static CN variant")])
def test_judge_scored_tasks_are_refused_without_a_judge(task, hint):
    with pytest.raises(ValueError, match="evaluation.lmms_eval.judge is not set") as err:
        check_tasks(["pope", task], LmmsConfig())
    assert task in str(err.value) and hint in str(err.value)
    check_tasks(["pope", "mmbench_en_dev_static", "gqa"], LmmsConfig())  # no judge needed
    check_tasks(["pope", task], LmmsConfig(judge=Judge(model="gpt-4o-2024-11-20")))
    with pytest.raises(ValueError, match="not supported"):
        check_tasks(["vqav2_testdev"], LmmsConfig())


def test_judge_needs_its_key_and_one_url_meaning(monkeypatch):
    judge = Judge(model="gpt-4o-2024-11-20", api_key_env="MY_JUDGE_KEY")
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="MY_JUDGE_KEY"):
        judge.env()
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    assert judge.env() == {"API_TYPE": "openai", "MODEL_VERSION": "gpt-4o-2024-11-20", "OPENAI_API_KEY": "sk-test"}
    with_url = LmmsConfig(judge=Judge(model="m", api_url="http://judge/v1"))
    with pytest.raises(ValueError, match="separate run"):
        check_tasks(["mmvet", "mmbench_en_dev"], with_url)
    check_tasks(["mmvet"], with_url)


def test_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(lmms, "run", lambda *a, **k: pytest.fail("lmms-eval must not run"))
    (tmp_path / "model").mkdir()
    with pytest.raises(ValueError, match="mmvet"):
        evaluate_lmms(tmp_path / "model", ["pope", "mmvet"], {"model_args": {"device_map": "auto"}}, KEY,
                      tmp_path / "e.csv", tmp_path / "p.json")
    assert not (tmp_path / "e.csv").exists()


def test_llava_hf_needs_processor_and_chat_template(tmp_path):
    cfg = LmmsConfig()
    with pytest.raises(FileNotFoundError, match="config.json"):
        check_model_dir(tmp_path, cfg)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no processor"):
        check_model_dir(tmp_path, cfg)
    (tmp_path / "processor_config.json").write_text(json.dumps({"patch_size": 14}))
    with pytest.raises(FileNotFoundError, match="chat template"):
        check_model_dir(tmp_path, cfg)
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    check_model_dir(tmp_path, cfg)


def test_scales_are_normalised_to_percent(tmp_path):
    results = {"pope": {"pope_accuracy,none": 0.85, "pope_f1_score,none": 0.84, "pope_precision,none": 0.9,
                        "pope_recall,none": 0.79, "pope_yes_ratio,none": 0.5},
               "vqav2_val": {"exact_match,none": 0.785, "exact_match_stderr,none": "N/A"},
               "mmvet": {"gpt_eval_score,none": 31.1}, "mmbench_en_dev": {"gpt_eval_score,none": 64.3}}
    path = _results_dir(tmp_path, results, {})
    values = parse_results(path, list(results))
    assert values["pope"] == pytest.approx({"pope_accuracy": 85.0, "pope_f1_score": 84.0, "pope_precision": 90.0,
                                            "pope_recall": 79.0})
    assert values["vqav2_val"] == pytest.approx({"exact_match": 78.5})
    assert values["mmvet"] == {"gpt_eval_score": 31.1} and values["mmbench_en_dev"] == {"gpt_eval_score": 64.3}


@pytest.mark.parametrize("results, match", [
    ({"gqa": {"exact_match,none": 61.9}}, "outside 0–100"),          # a 0–100 number where 0–1 belongs
    ({"gqa": {"exact_match,none": "N/A"}}, "not a number"),
    ({"gqa": {"exact_match_stderr,none": 0.01}}, "not a number"),
    ({"pope": {"pope_accuracy,none": 0.8}}, "no results for task gqa"),
])
def test_bad_results_files_fail_naming_the_file(tmp_path, results, match):
    path = _results_dir(tmp_path, results, {})
    with pytest.raises(LmmsEvalError, match=match) as err:
        parse_results(path, ["gqa"])
    assert str(path) in str(err.value)


def test_a_limited_run_is_not_a_result(tmp_path):
    path = _results_dir(tmp_path, {"gqa": {"exact_match,none": 0.6}}, {},
                        n_samples={"gqa": {"original": 12578, "effective": 100}})
    with pytest.raises(LmmsEvalError, match="100 of 12578"):
        parse_results(path, ["gqa"])


def test_missing_results_file_is_an_error(tmp_path):
    (tmp_path / "out").mkdir()
    log_path = tmp_path / "out" / "lmms_eval.log"
    log_path.write_text("Traceback ...\nOSError: model not found\n")
    with pytest.raises(LmmsEvalError, match="(?s)no results file.*exits 0.*model not found"):
        find_results(tmp_path / "out", log_path)


def _local_model(tmp_path):
    """A model folder and a task needing no hub download, for runs stopped before lmms-eval does anything."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return model, {"local": lmms.TaskSpec("local", {"exact_match": 100.0}, "exact_match", "a local set", hub=False)}


def test_cli_exiting_0_without_results_fails(tmp_path, monkeypatch):
    """The run itself, with a command that behaves like lmms-eval when the model fails to load."""
    monkeypatch.setattr(lmms, "installed_version", lambda: "0.7.3")
    monkeypatch.setattr(lmms, "build_command", lambda *a: [sys.executable, "-c", "print('Error during evaluation')"])
    model, specs = _local_model(tmp_path)
    with pytest.raises(LmmsEvalError, match="(?s)no results file.*Error during evaluation"):
        evaluate_lmms(model, ["local"], {"model": "selectbench"}, KEY, tmp_path / "e.csv", tmp_path / "p.json", specs)
    assert not (tmp_path / "e.csv").exists()


def _run(tmp_path, answers: list[str], max_empty: float):
    path = _results_dir(tmp_path, {"gqa": {"exact_match,none": 0.5}}, {"gqa": answers})
    return collect(path, ["gqa"], LmmsConfig(max_empty_fraction=max_empty), KEY, "0.7.3")


def test_empty_answers_are_counted_and_fail_above_the_threshold(tmp_path):
    answers = ["yes"] * 98 + ["", "  "]
    rows, predictions, _ = _run(tmp_path / "a", answers, 0.02)
    by_metric = {r["metric"]: r for r in rows}
    assert by_metric["empty_answers"]["value"] == 2 and by_metric["samples"]["value"] == 100
    assert by_metric["exact_match"]["value"] == 50.0
    assert predictions["gqa"][98] == {"id": 98, "output": ""}
    with pytest.raises(LmmsEvalError, match="3 of 100 answers are empty.*max_empty_fraction 0.02"):
        _run(tmp_path / "b", ["yes"] * 97 + [""] * 3, 0.02)
    rows, _, _ = _run(tmp_path / "c", ["yes"] * 95 + [""] * 5, 0.05)  # the threshold is the configured one
    assert {r["metric"]: r["value"] for r in rows}["empty_answers"] == 5


def test_rows_carry_the_protocol_of_their_task(tmp_path):
    rows, _, _ = _run(tmp_path, ["a"] * 10, 0.02)
    assert {r["protocol"] for r in rows} == {"lmms-eval 0.7.3: GQA testdev-balanced, exact match; greedy"}
    assert all(r[k] == v for r in rows for k, v in KEY.items())
    assert "not test-dev" in lmms.protocol(TASKS["vqav2_val"], "0.7.3")
    assert lmms.protocol(TASKS["mmvet"], "0.7.3", Judge(model="gpt-4o")).endswith("judge gpt-4o; greedy")


def test_lmms_rows_make_tables_that_name_the_protocol_apart_from_published(tmp_path):
    from selectbench.report.tables import read_rows, summarise, to_latex, to_markdown, write_long

    tasks = ["pope", "vqav2_val"]
    labels = {t: lmms.protocol(TASKS[t], "0.7.3") for t in tasks}
    rows = [{**KEY, "method": m, "ratio": r, "benchmark": t, "metric": TASKS[t].primary, "value": v,
             "protocol": labels[t]}
            for m, r, vals in (("full", 1.0, (86.0, 78.0)), ("random", 0.1, (84.0, 74.0))) for t, v in zip(tasks, vals)]
    write_long(rows, tmp_path / "t.csv")
    rows = read_rows([tmp_path / "t.csv"])
    summary = summarise(rows, "full", tasks, chance_margin=10)
    md = to_markdown(summary, tasks, "llava665k", {("random", 0.1): 93.5})
    assert "| pope (pope_f1_score) | vqav2_val (exact_match) | Rel. % | published Rel. % (paper's protocol) |" in md
    assert "| random | 0.1 | 1 | 84.0 | 74.0 | 96.3 | 93.5 |" in md
    assert "VQAv2 val (not test-dev)" in md and "lmms-eval 0.7.3" in md
    tex = to_latex(summary, tasks, "llava665k")
    assert "Protocol: pope: lmms-eval 0.7.3" in tex and "vqav2\\_val: lmms-eval 0.7.3: VQAv2 val (not test-dev)" in tex
    first = rows.to_dict("records")[0]
    mixed = [*rows.to_dict("records"), {**first, "method": "xmas", "protocol": "selectbench built-in evaluator"}]
    with pytest.raises(ValueError, match="different protocols"):
        summarise(mixed, "full", tasks)


def test_per_item_scores_come_from_the_logged_samples(tmp_path):
    """lmms-eval logs each sample's metric values: plain numbers for mean-aggregated metrics (exact_match) are
    taken; per-sample records for a custom aggregation (POPE's F1, judges) are left out, never guessed."""
    spec = lmms.TaskSpec("t", {"exact_match": 100.0, "pope_accuracy": 100.0, "judged": 1.0}, "exact_match", "x")
    samples = [{"doc_id": 0, "exact_match": 1.0, "pope_accuracy": {"score": 0.0}, "judged": {"answer": "A"}},
               {"doc_id": 1, "exact_match": 0.0, "pope_accuracy": {"score": 1.0}, "judged": {"answer": "B"}}]
    assert lmms.sample_scores(samples, spec) == {"exact_match": [100.0, 0.0]}
    pope = [{"doc_id": i, "pope_f1_score": {"question_id": i, "score": float(p == g), "prediction": p,
                                             "ground_truth": g}} for i, (p, g) in enumerate([("yes", "yes"),
                                                                                            ("no", "yes"),
                                                                                            ("maybe", "no")])]
    assert lmms.sample_scores(pope, lmms.TASKS["pope"]) == {"predicted_yes": [1.0, 0.0, 0.0],
                                                            "label_yes": [1.0, 1.0, 0.0]}
    path = _results_dir(tmp_path, {"gqa": {"exact_match,none": 0.5}}, {"gqa": ["a", "b"]})
    for line_path in path.parent.glob("*_samples_gqa.jsonl"):
        line_path.write_text("".join(json.dumps({"doc_id": i, "filtered_resps": ["a"], "exact_match": v}) + "\n"
                                     for i, v in enumerate([1.0, 0.0])))
    _, _, items = collect(path, ["gqa"], LmmsConfig(), KEY, "0.7.3")
    assert [(r["item"], r["metric"], r["value"]) for r in items] == [(0, "exact_match", 100.0), (1, "exact_match", 0.0)]


def _judged_run(tmp_path: Path, samples: dict[str, list[dict]], fallbacks: list[dict] | None) -> Path:
    """A run folder with judge-scored tasks: per-sample gpt_eval_score records as lmms-eval 0.7.3 logs them."""
    path = _results_dir(tmp_path, {t: {"gpt_eval_score,none": 30.0} for t in samples}, {t: [] for t in samples},
                        {t: {"original": len(s), "effective": len(s)} for t, s in samples.items()})
    for task, records in samples.items():
        lmms.samples_path(path, task).write_text("".join(
            json.dumps({"doc_id": i, "filtered_resps": [r.get("pred_answer", r.get("prediction"))],
                        "gpt_eval_score": r}) + "\n" for i, r in enumerate(records)))
    if fallbacks is not None:
        (path.parent.parent / lmms.FALLBACKS_FILE).write_text("".join(json.dumps(f) + "\n" for f in fallbacks))
    return path


def _mmvet_record(i: int, score: float, eval_model: str) -> dict:
    return {"question_id": f"v1_{i}", "question": "q", "gt_answer": "a", "capabilities": "rec", "pred_answer": "a",
            "score": score, "eval_model": eval_model}


def test_failed_mmvet_judge_calls_fail_the_job_and_are_counted(tmp_path):
    """A judge call that fails leaves score 0.0 with eval_model "" (lmms-eval logs it at info level only); a real
    0.0 grade names the judge's model."""
    records = [_mmvet_record(0, 1.0, "gpt-4o-2024-11-20"), _mmvet_record(1, 0.0, "gpt-4o-2024-11-20"),
               _mmvet_record(2, 0.0, ""), _mmvet_record(3, 0.0, "")]
    path = _judged_run(tmp_path / "a", {"mmvet": records}, None)
    with pytest.raises(LmmsEvalError, match=r"mmvet: 2 of 4 samples were graded 0.0 because the judge call failed "
                                            r".*max_judge_failures 0; e.g. \['v1_2', 'v1_3'\]"):
        collect(path, ["mmvet"], LmmsConfig(), KEY, "0.7.3")
    rows, _, _ = collect(path, ["mmvet"], LmmsConfig(max_judge_failures=2), KEY, "0.7.3")
    assert {r["metric"]: r["value"] for r in rows}["judge_failures"] == 2
    healthy = _judged_run(tmp_path / "b", {"mmvet": records[:2]}, None)
    rows, _, _ = collect(healthy, ["mmvet"], LmmsConfig(), KEY, "0.7.3")
    assert {r["metric"]: r["value"] for r in rows}["judge_failures"] == 0
    with pytest.raises(ValueError, match="max_judge_failures"):
        LmmsConfig.from_dict({"model": "selectbench", "max_judge_failures": -1})


def _mmbench_record(index: int, question: str, prediction: str) -> dict:
    return {"index": index, "question": question, "answer": "A", "prediction": prediction, "hint": "nan",
            "source": "s", "split": "dev", "category": "c", "L2-category": "l2", "A": "cat", "B": "dog",
            "C": "cow", "D": "nan"}


def test_mmbench_random_letters_are_recorded_and_fail_the_job(tmp_path):
    """lmms-eval's own MMBench matcher, with a judge whose calls fail: the answer its rules cannot parse gets a
    random letter, which the entry point records; collect counts it for its task (EN and CN share indices) and
    fails above the threshold."""
    pd = pytest.importorskip("pandas")
    from lmms_eval.tasks.mmbench.mmbench_evals import MMBench_Evaluator

    from selectbench.evaluation.lmms_model import record_judge_fallbacks

    record = tmp_path / lmms.FALLBACKS_FILE
    original = MMBench_Evaluator.extract_answer_from_item
    try:
        record_judge_fallbacks(record)
        evaluator = MMBench_Evaluator()
        evaluator.get_chat_response = lambda *a, **k: "Failed to obtain answer via API"
        for index, prediction in ((7, "I cannot tell"), (8, "B")):
            item = pd.Series({**_mmbench_record(index, "Which animal?", prediction), "D": float("nan")})
            letter, _ = evaluator.extract_answer_from_item(item)
            assert letter in "ABCDE"
    finally:
        MMBench_Evaluator.extract_answer_from_item = original
    fallbacks = lmms.read_samples(record)
    assert [(f["index"], f["prediction"]) for f in fallbacks] == [(7, "I cannot tell")]

    en = [_mmbench_record(i, "Which animal?", p) for i, p in ((7, "I cannot tell"), (8, "B"))]
    cn = [_mmbench_record(i, "哪种动物？", p) for i, p in ((7, "A"), (8, "B"))]
    path = _judged_run(tmp_path / "run", {"mmbench_en_dev": en, "mmbench_cn_dev": cn}, fallbacks)
    with pytest.raises(LmmsEvalError, match=r"mmbench_en_dev: 1 of 2 samples were given a random letter.*e\.g\. \[7\]"):
        collect(path, ["mmbench_cn_dev", "mmbench_en_dev"], LmmsConfig(), KEY, "0.7.3")
    rows, _, _ = collect(path, ["mmbench_cn_dev", "mmbench_en_dev"], LmmsConfig(max_judge_failures=1), KEY, "0.7.3")
    assert {r["benchmark"]: r["value"] for r in rows if r["metric"] == "judge_failures"} == {
        "mmbench_cn_dev": 0, "mmbench_en_dev": 1}
    unrecorded = _judged_run(tmp_path / "unrecorded", {"mmbench_en_dev": en}, None)
    with pytest.raises(LmmsEvalError, match="no judge fallback record"):
        collect(unrecorded, ["mmbench_en_dev"], LmmsConfig(), KEY, "0.7.3")


def test_the_run_tells_the_entry_point_where_to_record_fallbacks(tmp_path, monkeypatch):
    seen = {}

    def stop(cmd, env, *args):
        seen.update(env)
        raise LmmsEvalError("stopped after the command")

    monkeypatch.setattr(lmms, "installed_version", lambda: "0.7.3")
    monkeypatch.setattr(lmms, "run", stop)
    model, specs = _local_model(tmp_path)
    with pytest.raises(LmmsEvalError, match="stopped"):
        evaluate_lmms(model, ["local"], {"model": "selectbench"}, KEY, tmp_path / "e.csv", tmp_path / "p.json", specs)
    assert seen[lmms.FALLBACKS_ENV] == str(tmp_path / "e.lmms" / lmms.FALLBACKS_FILE)


def test_generation_is_greedy_unless_configured_and_the_label_says_which(tmp_path):
    """mmvet.yaml asks for temperature 0.2 and llava_hf samples above 0; the default --gen_kwargs makes every task
    greedy, {} keeps the YAMLs, and the protocol names the decoding. A results file whose logged task config ran
    at another temperature than the config asks for is an error."""
    mmvet, gqa = TASKS["mmvet"], TASKS["gqa"]
    assert lmms.protocol(mmvet, "0.7.3").endswith("(not LLaVA's scripts); greedy")
    assert lmms.protocol(mmvet, "0.7.3", gen_kwargs={}).endswith("; temperature 0.2 sampled")
    assert lmms.protocol(gqa, "0.7.3", gen_kwargs={}).endswith("; greedy")
    assert lmms.protocol(gqa, "0.7.3", gen_kwargs={"temperature": 0.7}).endswith("; temperature 0.7 sampled")
    assert lmms.protocol(TASKS["mmbench_en_dev"], "0.7.3").endswith("; greedy")
    assert LmmsConfig.from_dict({"model": "selectbench"}).gen_kwargs == {"temperature": 0}
    with pytest.raises(ValueError, match="gen_kwargs"):
        LmmsConfig.from_dict({"model": "selectbench", "gen_kwargs": "temperature=0"})

    records = [_mmvet_record(0, 1.0, "gpt-4o-2024-11-20")]
    path = _judged_run(tmp_path, {"mmvet": records}, None)
    body = json.loads(path.read_text())
    body["configs"] = {"mmvet": {"generation_kwargs": {"max_new_tokens": 1024, "temperature": 0.2, "do_sample": False}}}
    path.write_text(json.dumps(body))
    with pytest.raises(LmmsEvalError, match="mmvet ran at temperature 0.2, the config asks for 0"):
        collect(path, ["mmvet"], LmmsConfig(), KEY, "0.7.3")
    rows, _, _ = collect(path, ["mmvet"], LmmsConfig(gen_kwargs={}), KEY, "0.7.3")
    assert {r["protocol"] for r in rows} == {lmms.protocol(mmvet, "0.7.3", gen_kwargs={})}
    body["configs"]["mmvet"]["generation_kwargs"]["temperature"] = 0
    path.write_text(json.dumps(body))
    rows, _, _ = collect(path, ["mmvet"], LmmsConfig(), KEY, "0.7.3")
    assert all(r["protocol"].endswith("; greedy") for r in rows)


def test_a_subsample_is_opt_in_per_task_runs_alone_and_is_labelled(tmp_path):
    """evaluation.lmms_eval.limit: lmms-eval's --limit on the one task of a run (it would cut every task of the
    run), accepted in the results file only where the config asks for exactly that many, and named in the
    protocol; a run with a limit nobody asked for is still refused."""
    cfg = LmmsConfig.from_dict({"model": "selectbench", "limit": {"vqav2_val": 20000}})
    cmd = build_command(tmp_path / "m", ["vqav2_val"], cfg, tmp_path / "o")
    assert cmd[cmd.index("--limit") + 1] == "20000"
    assert "--limit" not in build_command(tmp_path / "m", ["gqa"], cfg, tmp_path / "o")
    with pytest.raises(ValueError, match="set evaluation.jobs: per_task"):
        check_tasks(["gqa", "vqav2_val"], cfg)
    check_tasks(["vqav2_val"], cfg)
    with pytest.raises(ValueError, match="not lmms-eval tasks"):
        check_tasks(["gqa"], LmmsConfig(limit={"vqav2": 10}))
    for bad in ({"vqav2_val": 0}, {"vqav2_val": 0.5}, [20000]):
        with pytest.raises(ValueError, match="limit"):
            LmmsConfig.from_dict({"model": "selectbench", "limit": bad})

    path = _results_dir(tmp_path, {"vqav2_val": {"exact_match,none": 0.7}}, {"vqav2_val": ["yes"] * 4},
                        n_samples={"vqav2_val": {"original": 214354, "effective": 4}})
    with pytest.raises(LmmsEvalError, match="4 of 214354"):
        collect(path, ["vqav2_val"], LmmsConfig(), KEY, "0.7.3")
    with pytest.raises(LmmsEvalError, match="4 of 214354"):
        collect(path, ["vqav2_val"], LmmsConfig(limit={"vqav2_val": 5}), KEY, "0.7.3")
    rows, _, _ = collect(path, ["vqav2_val"], LmmsConfig(limit={"vqav2_val": 4}), KEY, "0.7.3")
    assert {r["protocol"] for r in rows} == {"lmms-eval 0.7.3: VQAv2 val (not test-dev), VQA soft accuracy; "
                                             "subsample: first 4 of 214354 documents (lmms-eval --limit); greedy"}
    assert lmms.protocol(TASKS["vqav2_val"], "0.7.3", subsample=(214354, 214354)) == lmms.protocol(
        TASKS["vqav2_val"], "0.7.3")  # a limit above the task's size evaluates all of it: nothing to say


def test_every_answer_goes_to_the_suites_store_beside_the_rows(tmp_path, monkeypatch):
    """The run names the store (lmms-eval's --use_cache hook, the folder in the entry point's environment); a
    store left by another model is emptied before the run."""
    seen = {}

    def stop(cmd, env, *args):
        seen.update(cmd=cmd, env=env)
        raise LmmsEvalError("stopped after the command")

    monkeypatch.setattr(lmms, "installed_version", lambda: "0.7.3")
    monkeypatch.setattr(lmms, "run", stop)
    model, specs = _local_model(tmp_path)
    store = tmp_path / "e.responses"
    store.mkdir()
    (store / "identity.json").write_text(json.dumps({"format": 1, "model": "another"}))
    (store / "responses.rank0.jsonl").write_text('{"key": "k", "response": "stale"}\n')
    with pytest.raises(LmmsEvalError, match="stopped"):
        evaluate_lmms(model, ["local"], {"model": "selectbench"}, KEY, tmp_path / "e.csv", tmp_path / "p.json", specs)
    assert seen["cmd"][seen["cmd"].index("--use_cache") + 1] == str(store)
    assert seen["env"][lmms.responses.STORE_ENV] == str(store)
    assert not (store / "responses.rank0.jsonl").exists()
    assert json.loads((store / "identity.json").read_text())["model"] == "selectbench"
