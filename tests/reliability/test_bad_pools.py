"""Bad pools, through the prepare step as a job runs it: every problem kind of ../shared/docs/data.md and every
malformed file stops with PoolError naming the file and the record (row and id), and publishes nothing; the few
cases accepted by design are asserted as accepted, each with its reason."""

from __future__ import annotations

import json
import re

import pytest

from selectbench.data.prepare import prepare
from selectbench.data.validate import PoolError

from tests.reliability.conftest import turns


# A breakage takes (records, image root) and changes one record, or the file of its image.


def _first_turn(text, row=1):
    return lambda records, images: records[row]["conversations"][0].__setitem__("value", text)


def _turns(value):
    return lambda records, images: records[1].__setitem__("conversations", value)


def _set(key, value, row=1):
    return lambda records, images: records[row].__setitem__(key, value)


def _drop(key, row=1):
    return lambda records, images: records[row].pop(key)


def _image_file(write):
    return lambda records, images: write(images / records[1]["image"])


def _replace_file_with_folder(path):
    path.unlink()
    path.mkdir()


# (case id, breakage of record 1 (id 'gqa-1') or of its image, what the message says about it); the record's row
# is 1 unless ROW_OF says otherwise
RECORD_CASES = [
    ("missing_image", _image_file(lambda p: p.unlink()), "image file not found"),
    ("empty_image", _image_file(lambda p: p.write_bytes(b"")), "empty image file"),
    ("unreadable_image", _image_file(lambda p: p.write_bytes(b"\xff\xd8 not a jpeg")), "unreadable image"),
    ("image_is_a_folder", _image_file(_replace_file_with_folder), "not a regular file"),
    ("no_conversations", _drop("conversations"), "no conversations"),
    ("conversations_empty", _turns([]), "no conversations"),
    ("conversations_not_a_list", _turns({"from": "human", "value": "<image>\nHi"}), "no conversations"),
    ("two_human_turns", _turns([{"from": "human", "value": "<image>\nA?"}, {"from": "human", "value": "B?"}]),
     "turns must alternate"),
    ("gpt_first", _turns([{"from": "gpt", "value": "<image>\nA"}, {"from": "human", "value": "B?"}]),
     "turn 0 should be from 'human'"),
    ("unknown_speaker", _turns([{"from": "user", "value": "<image>\nA?"}, {"from": "gpt", "value": "B"}]),
     "found 'user'"),
    ("ends_on_a_question", _turns(turns("<image>\nA?", "B", "C?")), "ends on a human turn"),
    ("turn_not_an_object", _turns(["<image>\nA?", "B"]), "found 'str'"),
    ("empty_turn", _turns(turns("<image>\nA?", "")), "turn 1 is empty"),
    ("whitespace_turn", _turns(turns("<image>\nA?", " \n\t")), "turn 1 is empty"),
    ("non_string_value_int", _turns(turns("<image>\nWhat year?", 1999)), "non-string value \\(int\\)"),
    ("non_string_value_null", _turns(turns("<image>\nWhat year?", None)), "non-string value \\(NoneType\\)"),
    ("image_token_missing", _first_turn("Is the sky dark?"), "no <image> token"),
    ("image_token_without_image", _first_turn("<image>\nHaiku?", row=4),
     "<image> token present but the record has no image"),
    ("multiple_image_tokens", _first_turn("<image>\n<image>\nIs the sky dark?"), "2 <image> tokens"),
    ("image_not_a_string", _set("image", 2354786), "image is not a path"),
    ("image_empty_string", _set("image", ""), "image is not a path"),
    ("image_null", _set("image", None), "image is not a path"),
    ("image_a_list", _set("image", ["gqa/images/2354786.jpg"]), "image is not a path"),
    ("image_absolute_path", _set("image", "/etc/passwd"), "leaves the image root"),
    ("image_dotdot_path", _set("image", "gqa/../../secret.jpg"), "leaves the image root"),
]
ROW_OF = {"image_token_without_image": 4}


@pytest.mark.parametrize("case, breakage, detail", RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_a_broken_record_stops_prepare_naming_file_row_and_id(pool, tmp_path, case, breakage, detail):
    breakage(pool.records, pool.images)
    row = ROW_OF.get(case, 1)
    out = tmp_path / "results" / "data"
    with pytest.raises(PoolError) as err:
        prepare(pool.config(), out)
    message = str(err.value)
    assert re.search(rf"{re.escape(str(pool.file))}: record {row} \(id '{pool.records[row]['id']}'\): .*{detail}",
                     message), message
    assert not out.exists() and not list(out.parent.iterdir())  # nothing published, no temporary folder left


# (case id, breakage of the records, message): records that are not records; each names file, row and id
IDENTITY_CASES = [
    ("record_is_a_string", lambda r, _: r.__setitem__(2, "x"), r"record 2 \(id None\): record is a str"),
    ("record_is_null", lambda r, _: r.__setitem__(2, None), r"record 2 \(id None\): record is a NoneType"),
    ("record_is_a_list", lambda r, _: r.__setitem__(2, [1, 2]), r"record 2 \(id None\): record is a list"),
    ("id_missing", _drop("id", row=2), r"record 2 \(id None\): missing or non-string id"),
    ("id_empty", _set("id", "", row=2), r"record 2 \(id ''\): missing or non-string id"),
    ("id_boolean", _set("id", True, row=2), r"record 2 \(id True\): missing or non-string id"),
    ("id_a_list", _set("id", [1], row=2), r"record 2 \(id '\[1\]'\): missing or non-string id"),
    ("id_a_float", _set("id", 1.5, row=2), r"record 2 \(id 1\.5\): missing or non-string id"),
    ("field_the_published_pool_adds", _set("row", 7, row=2),
     r"record 2 \(id 'vg-2'\): already has field\(s\) \['row'\]"),
]


@pytest.mark.parametrize("breakage, message", [c[1:] for c in IDENTITY_CASES], ids=[c[0] for c in IDENTITY_CASES])
def test_a_record_that_is_no_record_is_named(pool, tmp_path, breakage, message):
    breakage(pool.records, pool.images)
    with pytest.raises(PoolError, match=rf"{re.escape(str(pool.file))}: {message}"):
        prepare(pool.config(), tmp_path / "data")
    assert not (tmp_path / "data").exists()


def _nested(depth):
    return ("[" * depth + "]" * depth).encode()


# (case id, the pool file's bytes, message): the file itself is not a pool
FILE_CASES = [
    ("not_a_list", b'{"id": "a", "conversations": []}', "expected a JSON list of records, got dict"),
    ("a_bare_string", b'"pool"', "expected a JSON list of records, got str"),
    ("not_utf8", b'[{"id": "caf\xe9", "conversations": []}]', "not UTF-8 text"),
    ("truncated_json", json.dumps([{"id": "a", "conversations": turns("Hi", "Ho")}] * 3).encode()[:-20],
     "malformed JSON at line 1"),
    ("empty_file", b"", "malformed JSON at line 1 column 1"),
    ("trailing_garbage", b'[]\n[]', "malformed JSON at line 2"),
    ("nested_too_deeply", _nested(100_000), "JSON nested too deeply"),
    ("no_record_at_all", b"[]", "no usable record left after validation"),
]


@pytest.mark.parametrize("raw, message", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_a_file_that_is_not_a_pool_is_named(pool, tmp_path, raw, message):
    with pytest.raises(PoolError, match=rf"{re.escape(str(pool.file))}: {message}"):
        prepare(pool.config(raw=raw), tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_a_pool_file_that_does_not_exist_is_named(pool, tmp_path):
    cfg = {**pool.config(), "pool": str(tmp_path / "nowhere.json")}
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere.json"))):
        prepare(cfg, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_an_image_root_that_is_not_a_folder_is_named(pool, tmp_path):
    cfg = {**pool.config(), "image_root": str(tmp_path / "no-images")}
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(tmp_path / 'no-images'))}: image_root is not"):
        prepare(cfg, tmp_path / "data")


def test_fail_names_the_first_broken_record_and_counts_the_rest(pool, tmp_path):
    pool.records[1]["conversations"][1]["value"] = ""
    pool.records[3]["image"] = "textvqa/train_images/gone.jpg"
    pool.records[4]["conversations"] = []
    with pytest.raises(PoolError, match=r"record 1 \(id 'gqa-1'\): turn 1 is empty \(2 more broken records;"):
        prepare(pool.config(), tmp_path / "data")


# Duplicate ids, under each policy


def test_duplicate_ids_fail_names_the_id_and_rows(pool, tmp_path):
    pool.records[3]["id"] = "gqa-1"
    with pytest.raises(PoolError, match=rf"{re.escape(str(pool.file))}: duplicate id 'gqa-1' in records \[1, 3\]"):
        prepare(pool.config(), tmp_path / "data")


def test_duplicate_ids_drop_keeps_the_first_and_reports_the_rest(pool, tmp_path):
    pool.records[3]["id"] = "gqa-1"
    prepare(pool.config(duplicate_ids="drop", max_dropped_fraction=0.5), tmp_path / "data")
    published = json.loads((tmp_path / "data" / "pool.json").read_text())
    assert [r["row"] for r in published] == [0, 1, 2, 4, 5]
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert report["problems"]["duplicate_ids"]["first"] == [
        {"file": str(pool.file), "row": 3, "id": "gqa-1", "detail": "same id as record 1 (kept)"}]


def test_duplicate_ids_allow_keeps_every_record_as_a_statistic(pool, tmp_path):
    """Accepted by design: LLaVA-665k's ids are not unique (a COCO image id names every conversation about that
    image); records are keyed by row, and the repeats are counted in validation.json."""
    pool.records[3]["id"] = "gqa-1"
    prepare(pool.config(duplicate_ids="allow"), tmp_path / "data")
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert report["kept"] == len(pool.records)
    assert report["statistics"]["duplicate_ids"]["first"][0]["rows"] == [1, 3]


# `drop`: the rest is published, the dropped records are listed, a large share stops the run


def test_drop_publishes_the_rest_and_names_what_it_dropped(pool, tmp_path):
    pool.records[2]["conversations"][1]["value"] = "  "
    prepare(pool.config(broken_records="drop", max_dropped_fraction=0.2), tmp_path / "data")
    assert [r["id"] for r in json.loads((tmp_path / "data" / "pool.json").read_text())] == \
        ["coco-9", "gqa-1", "tvqa-3", "share-4", "coco-5"]
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert report["problems"]["empty_turn"]["first"][0] == {"file": str(pool.file), "row": 2, "id": "vg-2",
                                                           "detail": "turn 1 is empty"}


def test_drop_above_max_dropped_fraction_stops(pool, tmp_path):
    pool.records[2]["conversations"][1]["value"] = "  "
    pool.records[3]["conversations"][1]["value"] = "  "
    with pytest.raises(PoolError, match=r"validation would drop 2 of 6 records .* first empty_turn: .*record 2 "
                                        r"\(id 'vg-2'\)"):
        prepare(pool.config(broken_records="drop", max_dropped_fraction=0.2), tmp_path / "data")


def test_a_wrong_image_root_under_drop_stops_with_a_hint(pool, tmp_path):
    """Every image "missing" is a configuration error, not a pool of text-only records."""
    cfg = {**pool.config(broken_records="drop"), "image_root": str(pool.images / "coco")}
    with pytest.raises(PoolError, match=r"validation would drop 5 of 6 records .*missing_image: 5.*"
                                        r"the image values start with 'coco/'"):
        prepare(cfg, tmp_path / "data")


# Vision-Flan: the task is part of the record


def _vision_flan(pool):
    for record in pool.records:
        record["task_name"] = "VQA_counting"
    return pool


def test_vision_flan_without_any_task_name_is_refused(pool, tmp_path):
    with pytest.raises(PoolError, match=rf"{re.escape(str(pool.file))}: no record has a task_name field"):
        prepare(pool.config(source="vision_flan"), tmp_path / "data")


def test_vision_flan_record_without_a_task_is_named(pool, tmp_path):
    _vision_flan(pool).records[2].pop("task_name")
    with pytest.raises(PoolError, match=r"record 2 \(id 'vg-2'\): no task_name field and the image file name starts "
                                        r"with no known task"):
        prepare(pool.config(source="vision_flan"), tmp_path / "data")


def test_vision_flan_task_and_image_name_disagreeing_is_a_statistic(pool, tmp_path):
    """Accepted by design: the task comes from task_name; an image named after another task is counted
    (task_image_mismatch), since the released file names images by their source dataset, not always the task."""
    prepare(_vision_flan(pool).config(source="vision_flan"), tmp_path / "data")
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert report["statistics"]["task_image_mismatch"]["count"] == 5


# Task validation examples (paper scale, LESS): the same record checks, naming their own file


def test_a_broken_task_validation_example_is_named(pool, tmp_path):
    vdir = tmp_path / "task_validation"
    vdir.mkdir()
    (vdir / "pope.json").write_text(json.dumps([{"id": "v0", "image": pool.records[0]["image"],
                                                 "conversations": turns("Is there a cat?", "yes")}]))
    cfg = {**pool.config(), "task_validation": {"dir": str(vdir), "image_root": str(pool.images)}}
    with pytest.raises(PoolError, match=rf"{re.escape(str(vdir / 'pope.json'))}: record 0 \(id 'v0'\): .*no <image>"):
        prepare(cfg, tmp_path / "data")


@pytest.mark.parametrize("files, message", [
    ({}, r"task_validation/pope\.json: file not found"),
    ({"pope.json": "[]"}, r"task_validation/pope\.json: no validation example for task 'pope'"),
    ({"pope.json": '[{"id": "v0", '}, r"task_validation/pope\.json: malformed JSON"),
], ids=["task_file_missing", "task_file_empty", "task_file_truncated"])
def test_a_missing_or_empty_task_validation_file_is_named(pool, tmp_path, files, message):
    vdir = tmp_path / "task_validation"
    vdir.mkdir()
    for name, text in files.items():
        (vdir / name).write_text(text)
    cfg = {**pool.config(), "task_validation": {"dir": str(vdir), "image_root": str(pool.images)}}
    with pytest.raises(PoolError, match=message):
        prepare(cfg, tmp_path / "data")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("key", ["eval_dir", "captions"])
def test_a_missing_evaluation_set_or_captions_file_is_named(pool, tmp_path, key):
    (tmp_path / "eval").mkdir()
    cfg = {**pool.config(), key: str(tmp_path / ("eval" if key == "eval_dir" else "captions.json"))}
    missing = tmp_path / ("eval/pope.json" if key == "eval_dir" else "captions.json")
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        prepare(cfg, tmp_path / "data")
    assert not (tmp_path / "data").exists()


# Accepted by design, each for its reason


def test_a_trailing_image_token_is_accepted_and_counted(pool, tmp_path):
    """LLaVA-665k has "…\\n<image>" records; LLaVA moves the token to the front before tokenising, and so does
    the suite (statistic trailing_image_token)."""
    pool.records[1]["conversations"][0]["value"] = "Is the sky dark?\n<image>"
    prepare(pool.config(), tmp_path / "data")
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert report["kept"] == 6 and report["statistics"]["trailing_image_token"]["first"][0]["row"] == 1


def test_an_image_outside_the_known_source_folders_is_a_statistic(pool, tmp_path):
    """The source folders only label records (counts per source); any image under the image root is usable."""
    (pool.images / "own").mkdir()
    (pool.images / "own" / "x.jpg").write_bytes((pool.images / pool.records[1]["image"]).read_bytes())
    pool.records[1]["image"] = "own/x.jpg"
    prepare(pool.config(), tmp_path / "data")
    report = json.loads((tmp_path / "data" / "validation.json").read_text())
    assert report["statistics"]["unknown_image_source"]["count"] == 1


def test_images_exists_accepts_an_undecodable_file_which_fails_where_it_is_loaded(pool, tmp_path):
    """validation.images: exists (paper scale: a stat per file, not a decode of 665k images) lets a corrupt image
    through on purpose; the job that loads it stops, naming the file and the record."""
    from selectbench.data.images import ImageLoadError, open_rgb

    (pool.images / pool.records[1]["image"]).write_bytes(b"\xff\xd8 not a jpeg")
    prepare(pool.config(images="exists"), tmp_path / "data")
    with pytest.raises(ImageLoadError, match=rf"gqa/images/2354786\.jpg: unreadable image \(record gqa-1\)"):
        open_rgb(tmp_path / "data" / "images" / pool.records[1]["image"], "gqa-1")


def test_records_whose_answers_are_truncated_away_are_counted_not_refused(tmp_path):
    """Whether max_length cuts every supervised token depends on the model's tokenizer and template, which the
    prepare step does not have: the fine-tune counts them (fully_masked in its summary, a warning in its log,
    first examples by row and id), as LLaVA trains on them (they add no loss)."""
    from selectbench.embedded.tokenizer import train_tokenizer
    from selectbench.models.conversation import VicunaV1
    from selectbench.training.data import truncation_report

    tokenizer = train_tokenizer(["USER: ASSISTANT: what is this a cat"] * 5, 300, tmp_path / "tok")
    template = VicunaV1(tokenizer, image_seq_length=4, system="", max_length=40)
    records = [{"id": "ok", "row": 0, "conversations": turns("what is this", "a cat")},
               {"id": "long", "row": 9, "conversations": turns("what is this " * 30, "a cat")}]
    report = truncation_report(records, template)
    assert report["fully_masked"] == 1 and report["first"]["fully_masked"] == [{"index": 1, "row": 9, "id": "long"}]
