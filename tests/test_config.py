"""Settings files: content-addressed, written once, read back exactly as the config had them (order included)."""

import json

import pytest

from selectbench.config import read_settings, settings_file


def test_settings_keep_the_config_order_and_are_content_addressed(tmp_path):
    section = {"family_weights": {"identify": 0.26, "presence": 0.24, "compare": 0.06}}
    path = settings_file("datasets.digits", section, tmp_path)
    assert list(read_settings(f"@{path}")["family_weights"]) == ["identify", "presence", "compare"]
    assert settings_file("datasets.digits", section, tmp_path) == path
    reordered = {"family_weights": {"presence": 0.24, "identify": 0.26, "compare": 0.06}}
    assert settings_file("datasets.digits", reordered, tmp_path) != path
    assert read_settings(json.dumps(section)) == section


def test_command_line_values_get_their_yaml_types():
    from selectbench.config import typed_command_line

    config = {"seeds": [0], "datasets": {"d": {"embedded": {"seed": 0, "pool_size": 10}}}}
    # as Snakemake's --config parser hands them over: YAML's BaseLoader keeps every scalar a string
    typed_command_line(config, {"seeds": ["0", "1", "2"], "datasets": {"d": {"embedded": {"seed": "3"}}},
                                "run_methods": ["random", "xmas"]})
    assert config["seeds"] == [0, 1, 2] and config["run_methods"] == ["random", "xmas"]
    assert config["datasets"]["d"]["embedded"] == {"seed": 3, "pool_size": 10}  # merged, not replaced


def test_run_selection_narrows_methods_and_benchmarks_and_names_typos():
    import pytest

    from selectbench.config import select_run

    base = {"methods": {"random": {}, "xmas": {"clusters": 4}, "el2n": {}},
            "datasets": {"a": {"benchmarks": ["pope", "gqa"]}, "b": {"benchmarks": ["gqa", "mmvet"]}}}
    import copy

    config = {**copy.deepcopy(base), "run_methods": ["xmas"], "run_benchmarks": ["gqa"]}
    select_run(config)
    assert config["methods"] == {"xmas": {"clusters": 4}}
    assert [ds["benchmarks"] for ds in config["datasets"].values()] == [["gqa"], ["gqa"]]
    with pytest.raises(ValueError, match=r"run_methods: \['xmass'\] are not under methods"):
        select_run({**base, "run_methods": ["xmass"]})
    with pytest.raises(ValueError, match="leaves dataset b with none"):
        select_run({**copy.deepcopy(base), "run_benchmarks": ["pope"]})


def test_a_pool_on_disk_without_its_file_or_images_is_refused_by_the_schema():
    """Found when the DAG is planned, not as a KeyError inside the prepare job."""
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from tests.conftest import ROOT

    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    validate(json.loads(json.dumps(paper)), str(ROOT / "config" / "schema.yaml"))
    for dataset, key in (("llava665k", "pool"), ("visionflan", "image_root")):
        broken = json.loads(json.dumps(paper))
        del broken["datasets"][dataset][key]
        with pytest.raises(WorkflowError, match=f"'{key}' is a required property"):
            validate(broken, str(ROOT / "config" / "schema.yaml"))
