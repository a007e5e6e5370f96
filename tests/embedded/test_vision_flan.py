"""The embedded_vision_flan source: the digits world written in Vision-Flan's release layout, and read back by the
Vision-Flan reader that paper scale uses."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import PurePosixPath

import pytest

from selectbench.data.datadir import DataDir
from selectbench.data.pools import read_vision_flan
from selectbench.data.prepare import prepare
from selectbench.embedded.vision_flan import INSTRUCTIONS, RAW
from tests.conftest import TINY, TINY_VISION_FLAN, load_config


@pytest.fixture(scope="module")
def flan_config() -> dict:
    return load_config(TINY, TINY_VISION_FLAN)


@pytest.fixture(scope="module")
def flan_data(tmp_path_factory, flan_config) -> DataDir:
    out = tmp_path_factory.mktemp("flan") / "data"
    prepare(flan_config["datasets"]["digits_flan"], out)
    return DataDir(out)


def _raw(data: DataDir) -> list[dict]:
    return json.loads((data.path / data.manifest["source_file"]).read_text())


def test_raw_records_are_in_vision_flan_layout(flan_data):
    records = _raw(flan_data)
    raw_images = flan_data.path / RAW / "images"
    for r in records:
        assert list(r) == ["id", "image", "conversations", "task_name"]
        human, gpt = r["conversations"]
        assert (human["from"], gpt["from"]) == ("human", "gpt") and gpt["value"]
        assert human["value"].startswith("<image>\n") and human["value"].count("<image>") == 1
        assert PurePosixPath(r["image"]).name == r["image"], "one flat image folder"
        assert r["image"].startswith(r["task_name"] + "_") and (raw_images / r["image"]).is_file()
    tasks = Counter(r["task_name"] for r in records)
    assert len(tasks) > 20 and len(tasks) <= len(INSTRUCTIONS) * 8
    assert all(t.startswith("digits+") for t in tasks)
    ids = Counter(r["id"] for r in records)
    assert ids["0"] == len(tasks), "ids count within a task and repeat across tasks, as the release's"
    repeats = Counter((r["image"], json.dumps(r["conversations"])) for r in records)
    assert max(repeats.values()) > 1, "exact repeats (image included) under new ids, on purpose"


def test_the_reader_recovers_every_task_from_the_field_and_from_the_file_name(flan_data, tmp_path):
    records = _raw(flan_data)
    pool = read_vision_flan(flan_data.path / flan_data.manifest["source_file"])
    assert pool.tasks == [r["task_name"] for r in records] and not pool.problems
    assert pool.statistics["task_image_mismatch"]["count"] == 0
    # without task_name, the image's file name names the task (the reader's fallback): keep the field only on
    # each task's first record, from which the reader learns the task names
    first = {r["task_name"]: row for row, r in reversed(list(enumerate(records)))}
    stripped = [{k: v for k, v in r.items() if k != "task_name" or first[v] == row} for row, r in enumerate(records)]
    (tmp_path / "annotation.json").write_text(json.dumps(stripped))
    again = read_vision_flan(tmp_path / "annotation.json")
    assert again.tasks == pool.tasks and again.statistics["task_from"]["image"] == len(records) - len(first)


def test_the_published_pool_came_through_the_vision_flan_reader(flan_data, flan_config):
    manifest = flan_data.manifest
    assert (manifest["source"], manifest["generator"]) == ("vision_flan", "embedded_vision_flan")
    assert manifest["metadata_fields"] == ["row", "source", "task", "sha"]
    records = _raw(flan_data)
    assert len(flan_data.pool) == len(records) == flan_config["datasets"]["digits_flan"]["embedded_vision_flan"][
        "pool_size"]
    for published in flan_data.pool:
        assert published["task"] == published["source"] == records[published["row"]]["task_name"]
        assert (flan_data.image_root / published["image"]).is_file()
    report = json.loads((flan_data.path / "validation.json").read_text())
    assert report["dropped"] == 0 and not report["problems"]
    assert report["statistics"]["tasks"] == len({r["task_name"] for r in records}) > 20
    assert report["statistics"]["duplicate_ids"]["ids_repeated"] > 0


def test_the_published_folder_is_whole_after_its_rename(flan_data):
    """The reader links image roots by absolute path; inside a folder that is renamed on publishing, they must be
    relative, and every file the manifest names is there."""
    for link in ("images", "task_validation_images"):
        assert not os.path.isabs(os.readlink(flan_data.path / link))
    for name in flan_data.manifest["eval"]:
        items = flan_data.eval_items(name)
        assert items and all((flan_data.image_root / it["image"]).is_file() for it in items)
    for task in flan_data.validation_tasks():
        assert all((flan_data.validation_image_root / r["image"]).is_file() for r in flan_data.validation_items(task))
    captions = flan_data.captions()
    assert captions and (flan_data.image_root / captions[0]["image"]).is_file()
    assert (flan_data.path / flan_data.manifest["vision_pretrain"]).is_file()


@pytest.mark.parametrize("change, message", [
    ({"text_only_fraction": 0.1}, "'text_only_fraction' was unexpected"),
    ({"instruction_styles": ["plain", "poetic"]}, "poetic"),
])
def test_settings_vision_flan_has_not_are_rejected_when_planned(flan_config, change, message):
    from selectbench.config import check_seams

    cfg = json.loads(json.dumps(flan_config))
    cfg["datasets"]["digits_flan"]["embedded_vision_flan"].update(change)
    with pytest.raises(ValueError, match="datasets.digits_flan.source 'embedded_vision_flan': its settings fail"
                                         f".*{message}"):
        check_seams(cfg)
