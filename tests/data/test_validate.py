"""Bad input stops with a clear error naming the file and the record, and leaves nothing half-written."""

import json
import shutil

import pytest

from selectbench.data.prepare import prepare
from selectbench.data.validate import PoolError, load_json_list, validate_records


@pytest.fixture
def pool_copy(tmp_path, tiny_data):
    images = tmp_path / "images"
    shutil.copytree(tiny_data.image_root, images)
    records = json.loads(json.dumps(tiny_data.pool[:20]))
    return tmp_path, images, records


def _write(tmp_path, records, name="pool.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def _image_record(records):
    return next(i for i, r in enumerate(records) if "image" in r)


def test_malformed_json_names_file_and_position(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text('[{"id": 1,]')
    with pytest.raises(PoolError, match=r"pool\.json: malformed JSON at line 1"):
        validate_pool(path, tmp_path, {})


@pytest.mark.parametrize("breakage, message", [
    (lambda r: r.pop("conversations"), "no conversations"),
    (lambda r: r["conversations"].__setitem__(1, {"from": "human", "value": "x"}), "must alternate"),
    (lambda r: r["conversations"][1].__setitem__("value", "  "), "turn 1 is empty"),
    (lambda r: r["conversations"][1].__setitem__("value", 7), "non-string value"),
    (lambda r: r["conversations"][0].__setitem__("value", "no token here"), "no <image> token"),
])
def test_broken_records_name_the_record(pool_copy, breakage, message):
    tmp_path, images, records = pool_copy
    row = _image_record(records)
    breakage(records[row])
    with pytest.raises(PoolError, match=rf"pool\.json: record {row} \(id '{records[row]['id']}'\): .*{message}"):
        validate_pool(_write(tmp_path, records), images, {})


def test_missing_and_corrupt_images(pool_copy):
    tmp_path, images, records = pool_copy
    row = _image_record(records)
    (images / records[row]["image"]).unlink()
    with pytest.raises(PoolError, match=rf"record {row} .*image file not found"):
        validate_pool(_write(tmp_path, records), images, {})
    (images / records[row]["image"]).write_bytes(b"not a png at all")
    with pytest.raises(PoolError, match=rf"record {row} .*unreadable image"):
        validate_pool(_write(tmp_path, records), images, {})
    (images / records[row]["image"]).write_bytes(b"")
    with pytest.raises(PoolError, match=rf"record {row} .*empty image file"):
        validate_pool(_write(tmp_path, records), images, {})


def test_drop_policy_keeps_good_records_and_reports(pool_copy):
    tmp_path, images, records = pool_copy
    row = _image_record(records)
    (images / records[row]["image"]).unlink()
    # the pool repeats some conversations under new ids, with the same image: every record using it goes
    sharing = sum(r.get("image") == records[row]["image"] for r in records)
    kept, report = validate_pool(_write(tmp_path, records), images, {"broken_records": "drop", "max_dropped_fraction": 0.5})
    assert len(kept) == len(records) - sharing
    assert report.as_dict()["problems"]["missing_image"]["count"] == sharing
    assert report.as_dict()["problems"]["missing_image"]["first"][0]["row"] == row



def test_drop_beyond_max_dropped_fraction_stops_naming_the_problem(pool_copy):
    tmp_path, images, records = pool_copy
    shared = records[_image_record(records)]["image"]
    (images / shared).unlink()
    dropped = sum(r.get("image") == shared for r in records)
    path = _write(tmp_path, records)
    fraction = dropped / len(records)
    kept, _ = validate_pool(path, images, {"broken_records": "drop", "max_dropped_fraction": fraction})
    assert len(kept) == len(records) - dropped  # exactly at the limit: accepted
    with pytest.raises(PoolError, match=rf"pool\.json: validation would drop {dropped} of {len(records)} records .*"
                                        rf"max_dropped_fraction 0\.01 \(missing_image: {dropped}\); first "
                                        rf"missing_image: .*record {_image_record(records)} "):
        validate_pool(path, images, {"broken_records": "drop", "max_dropped_fraction": 0.01})


def test_max_dropped_fraction_is_a_fraction(tmp_path):
    with pytest.raises(ValueError, match="validation.max_dropped_fraction: 5 is not a number in"):
        validate_records([], tmp_path, {"max_dropped_fraction": 5}, file="x.json")

def test_duplicate_ids_fail_drop_or_allow(pool_copy):
    tmp_path, images, records = pool_copy
    records[3]["id"] = records[2]["id"]
    path = _write(tmp_path, records)
    with pytest.raises(PoolError, match=rf"duplicate id '{records[2]['id']}'"):
        validate_pool(path, images, {"duplicate_ids": "fail"})
    kept, _ = validate_pool(path, images, {"duplicate_ids": "drop"})
    assert len(kept) == len(records) - 1
    kept, report = validate_pool(path, images, {"duplicate_ids": "allow"})
    stats = report.as_dict()["statistics"]["duplicate_ids"]
    assert len(kept) == len(records) and "duplicate_ids" not in report.as_dict()["problems"]
    assert stats["ids_repeated"] == 1 and stats["first"][0]["rows"] == [2, 3]


def test_prepare_leaves_nothing_behind_on_bad_input(pool_copy):
    tmp_path, images, records = pool_copy
    records[0].pop("conversations")
    cfg = {"source": "llava", "pool": str(_write(tmp_path, records)), "image_root": str(images),
           "benchmarks": ["pope"]}
    out = tmp_path / "results" / "data"
    with pytest.raises(PoolError, match="no conversations"):
        prepare(cfg, out)
    assert not out.exists()
    assert not list((tmp_path / "results").iterdir())


def validate_pool(path, image_root, policy):
    """A LLaVA-format JSON file checked as prepare checks a pool: the records kept and the report."""
    records = load_json_list(path)
    rows, report = validate_records(records, image_root, policy, file=path)
    return [records[r] for r in rows], report


@pytest.mark.parametrize("image", ["../../../../../../etc/passwd", "/etc/passwd", "pool/../../outside.png",
                                   "C:\\images\\x.png", ".."])
def test_image_paths_leaving_the_image_root_are_broken(pool_copy, image):
    """Under every image mode, `exists` and `none` included: a pool may not read files outside its image root."""
    tmp_path, images, records = pool_copy
    (tmp_path / "outside.png").write_bytes((images / records[_image_record(records)]["image"]).read_bytes())
    row = _image_record(records)
    records[row]["image"] = image
    path = _write(tmp_path, records)
    for mode in ("open", "exists", "none"):
        with pytest.raises(PoolError, match=rf"record {row} .*leaves the image root"):
            validate_pool(path, images, {"images": mode})
    kept, report = validate_pool(path, images, {"broken_records": "drop", "images": "exists",
                                                "max_dropped_fraction": 0.5})
    assert len(kept) == len(records) - 1
    assert report.as_dict()["problems"]["image_outside_root"]["first"][0]["row"] == row


def test_a_path_that_stays_inside_the_root_is_fine(pool_copy):
    tmp_path, images, records = pool_copy
    row = _image_record(records)
    records[row]["image"] = f"pool/../{records[row]['image']}"
    kept, _ = validate_pool(_write(tmp_path, records), images, {})
    assert len(kept) == len(records)


def test_fail_counts_every_broken_record_image_problems_included(pool_copy):
    tmp_path, images, records = pool_copy
    rows = [i for i, r in enumerate(records) if "image" in r]
    records[rows[0]]["conversations"][1]["value"] = " "           # a record problem
    for row in rows[1:3]:                                          # and two image problems
        records[row]["image"] = "pool/missing.png"
    with pytest.raises(PoolError, match=rf"record {rows[0]} .*\(2 more broken records;"):
        validate_pool(_write(tmp_path, records), images, {})


def test_deeply_nested_json_is_a_named_error(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PoolError, match=r"pool\.json: JSON nested too deeply"):
        validate_pool(path, tmp_path, {})
