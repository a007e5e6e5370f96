"""Bad configurations stop the run when the DAG is planned, before any job, naming the config key: the schema
(config/schema.yaml, as the Snakefile validates it) and the planning checks (methods, benchmarks, registry
entries, run narrowing) are called in-process on the merged config; a few dry runs show the Snakefile reaching
them, and what Snakemake itself reports before the Snakefile runs."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from tests.conftest import ROOT, TINY, load_config

SCHEMA = str(ROOT / "config" / "schema.yaml")
BASE = load_config(TINY)


def _with(path: str, value):
    """The tiny config with the dotted key set to value (a key named DELETE is removed)."""
    config = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(last)
    else:
        node[last] = value
    return config


DELETE = object()

# (case id, dotted key, value, what the message names): schema errors name the key as "instance[...]" or the
# unexpected key itself
SCHEMA_CASES = [
    ("unknown_top_level_key", "seed", 0, "'seed' was unexpected"),
    ("unknown_features_key", "features.shard", 2, "'shard' was unexpected"),
    ("unknown_validation_key", "datasets.digits.validation.on_error", "drop", "'on_error' was unexpected"),
    ("unknown_training_key", "models.target.finetune.learning_rate", 0.1, "'learning_rate' was unexpected"),
    ("seeds_not_a_list", "seeds", 0, "instance\\['seeds'\\]"),
    ("seeds_as_strings", "seeds", ["0"], "instance\\['seeds'\\]\\[0\\]"),
    ("seed_negative", "seeds", [-1], "instance\\['seeds'\\]\\[0\\]"),
    ("seed_not_an_integer", "seeds", [0.5], "instance\\['seeds'\\]\\[0\\]"),
    ("seeds_repeated", "seeds", [0, 0], "instance\\['seeds'\\]"),
    ("seeds_empty", "seeds", [], "instance\\['seeds'\\]"),
    ("reference_seed_negative", "reference_seeds", [-2], "instance\\['reference_seeds'\\]\\[0\\]"),
    ("ratio_zero", "ratios", [0], "instance\\['ratios'\\]\\[0\\]"),
    ("ratio_above_one", "ratios", [1.5], "instance\\['ratios'\\]\\[0\\]"),
    ("ratio_negative", "ratios", [-0.1], "instance\\['ratios'\\]\\[0\\]"),
    ("ratio_a_string", "ratios", ["ten percent"], "instance\\['ratios'\\]\\[0\\]"),
    ("ratios_empty", "ratios", [], "instance\\['ratios'\\]"),
    ("dataset_ratio_zero", "datasets.digits.ratios", [0.0], "instance\\['datasets'\\]\\['digits'\\]\\['ratios'\\]"),
    ("datasets_empty", "datasets", {}, "instance\\['datasets'\\]"),
    ("benchmarks_empty", "datasets.digits.benchmarks", [], "instance\\['datasets'\\]\\['digits'\\]\\['benchmarks'\\]"),
    ("benchmarks_repeated", "datasets.digits.benchmarks", ["pope", "pope"], "\\['benchmarks'\\]"),
    ("source_missing", "datasets.digits.source", DELETE, "'source' is a required property"),
    ("llava665k_without_pool", "datasets.digits.source", "llava665k", "'pool' is a required property"),
    ("broken_records_policy", "datasets.digits.validation.broken_records", "skip", "\\['broken_records'\\]"),
    ("images_policy", "datasets.digits.validation.images", "decode", "\\['images'\\]"),
    ("duplicate_ids_policy", "datasets.digits.validation.duplicate_ids", "keep", "\\['duplicate_ids'\\]"),
    ("max_dropped_fraction_above_one", "datasets.digits.validation.max_dropped_fraction", 2,
     "\\['max_dropped_fraction'\\]"),
    ("image_workers_zero", "datasets.digits.validation.image_workers", 0, "\\['image_workers'\\]"),
    ("models_missing", "models", DELETE, "'models' is a required property"),
    ("evaluation_missing", "evaluation", DELETE, "'evaluation' is a required property"),
    ("report_missing", "report", DELETE, "'report' is a required property"),
    ("methods_missing", "methods", DELETE, "'methods' is a required property"),
    ("method_settings_a_list", "methods.random", [1], "instance\\['methods'\\]\\['random'\\]"),
    ("shards_zero", "features.shards", 0, "instance\\['features'\\]\\['shards'\\]"),
    ("batch_size_a_string", "features.batch_size", "16", "instance\\['features'\\]\\['batch_size'\\]"),
    ("feature_dtype", "features.dtype", "fp8", "instance\\['features'\\]\\['dtype'\\]"),
    ("lr_zero", "models.target.finetune.lr", 0, "\\['finetune'\\]\\['lr'\\]"),
    ("epochs_negative", "models.proxy.finetune.epochs", -1, "\\['finetune'\\]\\['epochs'\\]"),
    ("trainable_unknown_part", "models.target.finetune.trainable", ["everything"], "\\['trainable'\\]\\[0\\]"),
    ("max_length_too_small", "models.target.template.max_length", 8, "\\['template'\\]\\['max_length'\\]"),
    ("warmup_fraction_zero", "gradient_warmup.fraction", 0, "instance\\['gradient_warmup'\\]\\['fraction'\\]"),
    ("warmup_start_unknown", "gradient_warmup.start", "scratch", "instance\\['gradient_warmup'\\]\\['start'\\]"),
    ("evaluation_jobs_unknown", "evaluation.jobs", "per_item", "instance\\['evaluation'\\]\\['jobs'\\]"),
    ("evaluation_batch_zero", "evaluation.batch_size", 0, "instance\\['evaluation'\\]\\['batch_size'\\]"),
    ("compare_not_a_pair", "report.compare", ["xmas vs random"], "instance\\['report'\\]\\['compare'\\]\\[0\\]"),
    ("chance_margin_negative", "report.chance_margin", -5, "instance\\['report'\\]\\['chance_margin'\\]"),
    ("threads_zero", "threads.default", 0, "instance\\['threads'\\]\\['default'\\]"),
    ("export_subsets_a_string", "export_subsets", "yes", "instance\\['export_subsets'\\]"),
]


@pytest.mark.parametrize("key, value, named", [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_the_schema_refuses_a_bad_setting_naming_its_key(key, value, named):
    validate(json.loads(json.dumps(BASE)), SCHEMA)  # the base is good: only the change can fail
    with pytest.raises(WorkflowError, match=named):
        validate(json.loads(json.dumps(_with(key, value))), SCHEMA)


def _methods_plan(config):
    from selectbench.selection.registry import discover, expand

    return expand(config["methods"], discover([str(ROOT / "methods")]))


def _benchmarks_plan(config):
    from selectbench.evaluation.specs import check_backend

    for name, ds in config["datasets"].items():
        check_backend(ds["benchmarks"], config["evaluation"].get("backend", "builtin"), f"datasets.{name}.benchmarks")


def _seams_plan(config):
    from selectbench.config import check_seams

    check_seams(config)


def _together_plan(config):
    from selectbench.config import check_together

    check_together(config)


def _warmup_from(index):
    """The warm-up starting from proxy checkpoint `index` (the tiny proxy saves 3)."""
    return {**BASE["gradient_warmup"], "start": "proxy_checkpoint", "checkpoint": index}


def _run_plan(config):
    from selectbench.config import select_run

    select_run(config)


# (case id, planning check as rules/common.smk and the Snakefile call it, key, value, message)
PLANNING_CASES = [
    ("unknown_method", _methods_plan, "methods.xmass", {}, "unknown method 'xmass' in config"),
    ("unknown_method_parameter", _methods_plan, "methods.xmas", {"cluster": 4}, "method 'xmas' has no parameter"),
    ("bad_method_parameter", _methods_plan, "methods.xmas", {"svd": "approximate"},
     "method 'xmas': svd must be one of"),
    ("bad_ranking_band", _methods_plan, "methods.el2n", {"band": "top"}, "method 'el2n'"),
    ("unknown_benchmark", _benchmarks_plan, "datasets.digits.benchmarks", ["pope", "mmmu_val"],
     r"datasets.digits.benchmarks: unknown benchmarks \['mmmu_val'\]"),
    ("lmms_task_under_builtin", _benchmarks_plan, "datasets.digits.benchmarks", ["textvqa_val"],
     r"datasets.digits.benchmarks: \['textvqa_val'\] are lmms-eval tasks"),
    ("unknown_source", _seams_plan, "datasets.digits.source", "llava_665k",
     "datasets.digits.source: unknown source 'llava_665k'"),
    ("unknown_builder", _seams_plan, "models.target.builder", "scratch", "models.target.builder: unknown builder"),
    ("unknown_evaluator", _seams_plan, "evaluation.backend", "vlmeval", "evaluation.backend: unknown evaluator"),
    ("unknown_clip_builder", _seams_plan, "clip.builder", "openclip", "clip.builder: unknown clip_builder"),
    ("embedded_settings_fail_their_schema", _seams_plan, "datasets.digits.embedded.pool_size", -3,
     r"datasets.digits.source 'embedded': its settings fail .* at 'pool_size'"),
    ("warmup_checkpoint_past_the_last", _together_plan, "gradient_warmup", _warmup_from(3),
     r"gradient_warmup.checkpoint: 3 is not an index into the 3 checkpoints"),
    ("warmup_checkpoint_before_the_first", _together_plan, "gradient_warmup", _warmup_from(-4),
     r"gradient_warmup.checkpoint: -4 is not an index"),
    ("run_methods_typo", _run_plan, "run_methods", ["xmass"], r"run_methods: \['xmass'\] are not under methods"),
    ("run_benchmarks_typo", _run_plan, "run_benchmarks", ["pop"], r"run_benchmarks: \['pop'\] are not benchmarks"),
]


@pytest.mark.parametrize("check, key, value, message", [c[1:] for c in PLANNING_CASES],
                         ids=[c[0] for c in PLANNING_CASES])
def test_planning_refuses_a_name_nothing_defines_naming_its_key(check, key, value, message):
    check(copy.deepcopy(BASE))  # the base plans: only the change can fail
    with pytest.raises(ValueError, match=message):
        check(_with(key, value))


# Dry runs: what only the Snakefile, or Snakemake before it, reveals (each stops at planning: about 2 s)


def _dry_run(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory",
                           str(tmp_path / "work"), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_bad_config_file_stops_the_dry_run_naming_the_key(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"ratios": [0.1, 0], "methods": {"random": {}}}))
    run = _dry_run(tmp_path, "--configfile", str(mine))
    assert run.returncode != 0
    assert "On instance['ratios'][1]" in run.stdout + run.stderr
    assert not (tmp_path / "work" / "results").exists()


def test_an_unknown_method_on_the_command_line_stops_the_dry_run(tmp_path):
    run = _dry_run(tmp_path, "--config", "run_methods=[random,xmass]")
    assert run.returncode != 0
    assert "run_methods: ['xmass'] are not under methods" in run.stdout + run.stderr


def test_a_yaml_syntax_error_in_a_configfile_stops_without_naming_the_line(tmp_path):
    """Not guaranteed: Snakemake parses --configfile before the Snakefile runs and says only "Config file is not
    valid JSON or YAML" (no file, no line); the run does stop before anything starts (docs/guarantees.md)."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("seeds: [0, 1\nratios: [0.1]\n")
    run = _dry_run(tmp_path, "--configfile", str(mine))
    assert run.returncode != 0
    assert "Config file is not valid JSON or YAML" in run.stdout + run.stderr
    assert not (tmp_path / "work" / "results").exists()


@pytest.mark.parametrize("text, position", [
    ("ratios: [0.05, 0.1\nseeds: [0]\n", r"at line 2 column 6: expected ',' or '\]', but got ':' \(while parsing a "
                                         r"flow sequence at line 1 column 9\)"),
    ("threads:\n\tdefault: 1\n", r"at line 2 column 1: found character '\\t' that cannot start any token"),
    ("report: {chance_margin: 10\n", r"at line 2 column 1: expected ',' or '\}'"),
], ids=["unclosed_list", "tab_indent", "unclosed_mapping"])
def test_a_yaml_syntax_error_in_a_config_of_ours_names_file_and_line(tmp_path, text, position):
    from selectbench.config import check_yaml

    path = tmp_path / "default.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{path}: not valid YAML {position}"):
        check_yaml(path)
    check_yaml(ROOT / "config" / "default.yaml")


def test_the_snakefile_names_file_and_line_of_a_broken_default_config(tmp_path):
    """The Snakefile checks config/default.yaml's syntax before its `configfile:` loads it (a copy of the
    workflow with a broken default: the check comes before anything else is read)."""
    workflow = tmp_path / "workflow"
    (workflow / "config").mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", workflow / "Snakefile")
    default = (ROOT / "config" / "default.yaml").read_text().replace("ratios: [0.05, 0.1, 0.2]", "ratios: [0.05")
    (workflow / "config" / "default.yaml").write_text(default)
    line = default.splitlines().index("ratios: [0.05") + 1
    run = _dry_run(tmp_path, "--snakefile", str(workflow / "Snakefile"))
    assert run.returncode != 0
    assert (f"{workflow / 'config' / 'default.yaml'}: not valid YAML at line {line + 1} column 6: expected ',' or ']'"
            f", but got ':' (while parsing a flow sequence at line {line} column 9)") in run.stdout + run.stderr


def test_a_config_file_that_does_not_exist_is_named(tmp_path):
    run = _dry_run(tmp_path, "--configfile", str(tmp_path / "mine.yaml"))
    assert run.returncode != 0
    assert str(tmp_path / "mine.yaml") in run.stdout + run.stderr


def test_data_paths_are_checked_by_the_prepare_job_not_the_plan(tmp_path):
    """Accepted by design: a pool, image root or evaluation folder the config names is checked by prepare_data
    (the first job: nothing costly runs before it), not when the DAG is planned, because planning on a machine
    without the data is supported (pricing the paper grid on a laptop, a dry run on a login node)."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"datasets": {"digits": {"source": "llava665k", "pool": "/nowhere/pool.json",
                                                            "image_root": "/nowhere/images"}},
                                    "run_methods": ["random"]}))
    run = _dry_run(tmp_path, "--configfile", str(mine), "--", "results/digits/data")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "prepare_data" in run.stdout


@pytest.mark.parametrize("index", [0, 2, -3])
def test_a_warmup_checkpoint_the_proxy_saves_plans(index):
    from selectbench.config import check_together

    check_together({**BASE, "gradient_warmup": _warmup_from(index)})
