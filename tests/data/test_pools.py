"""LLaVA-665k and Vision-Flan pools in their real formats: reading, metadata, the validation report and its
policies, publishing (atomically) and exporting subsets as records."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from selectbench.data.pools import export_subset, original_record, record_sha
from selectbench.data.datadir import DataDir
from selectbench.data.prepare import prepare
from selectbench.data.validate import PoolError, validate_records
from selectbench.training.data import truncation_report

BENCH = ["pope"]


def _turns(*values):
    return [{"from": "human" if k % 2 == 0 else "gpt", "value": v} for k, v in enumerate(values)]


def _jpeg(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path, "JPEG")


# (record, source, problem kind or None); the LLaVA-665k layout: one image root, source = first folders
SAMPLE_665K = [
    ({"id": "000000000009", "image": "coco/train2017/000000000009.jpg",
      "conversations": _turns("<image>\nWhat is on the plate?", "Broccoli and rice.")}, "coco", None),
    ({"id": "000000000009", "image": "coco/train2017/000000000009.jpg",  # same image id, another conversation
      "conversations": _turns("<image>\nIs there a fork?\nAnswer the question using a single word or phrase.",
                              "No", "What colour is the plate?", "White", "How many bowls?", "3")}, "coco", None),
    ({"id": "2354786", "image": "gqa/images/2354786.jpg",
      "conversations": _turns("<image>\nIs the sky dark?", "Yes")}, "gqa", None),
    ({"id": "140031996", "image": "ocr_vqa/images/140031996.jpg",
      "conversations": _turns("<image>\nWho wrote this book?", "Jane Doe", "Is this a cookbook?", "No")},
     "ocr_vqa", None),
    ({"id": "0054c91397f2fe05", "image": "textvqa/train_images/0054c91397f2fe05.jpg",  # trailing <image>
      "conversations": _turns("What is written on the sign?\n<image>", "stop")}, "textvqa", None),
    ({"id": "2356347", "image": "vg/VG_100K/2356347.jpg",
      "conversations": _turns("<image>\nPlease provide a short description for this region: [0.1, 0.2, 0.5, 0.6].",
                              "A red car.")}, "vg", None),
    ({"id": "2408483", "image": "vg/VG_100K_2/2408483.jpg",
      "conversations": _turns("<image>\nWhat is the man holding?", "An umbrella.")}, "vg", None),
    ({"id": "i6IyJda_0", "model": "", "conversations": _turns("Write a haiku about rain.", "Soft rain on the roof")},
     "text", None),
    ({"id": "2354786", "image": "vg/VG_100K/2354786.jpg",  # GQA images are VG images: the id repeats
      "conversations": _turns("<image>\nWhat is in the corner?", "A lamp.")}, "vg", None),
    ({"id": "missing-1", "image": "gqa/images/2370000.jpg",
      "conversations": _turns("<image>\nWhat is it?", "A cat.")}, "gqa", "missing_image"),
    ({"id": "000000000025", "image": "coco/train2017/000000000025.jpg",
      "conversations": _turns("<image>\nWhat animal?", "Giraffe")}, "coco", "empty_image"),
    ({"id": "000000000030", "image": "coco/train2017/000000000030.jpg",
      "conversations": _turns("<image>\nWhat is in the vase?", "Flowers")}, "coco", "unreadable_image"),
    ({"id": "no-conv", "image": "coco/train2017/000000000009.jpg"}, "coco", "no_conversations"),
    ({"id": "two-humans", "image": "gqa/images/2354786.jpg",
      "conversations": [{"from": "human", "value": "<image>\nA?"}, {"from": "human", "value": "B?"}]},
     "gqa", "non_alternating"),
    ({"id": "empty", "image": "vg/VG_100K/2356347.jpg",
      "conversations": _turns("<image>\nWhat is this?", "   ")}, "vg", "empty_turn"),
    ({"id": "number", "image": "ocr_vqa/images/140031996.jpg",
      "conversations": _turns("<image>\nWhat year?", 1999)}, "ocr_vqa", "non_string_value"),
    ({"id": "no-token", "image": "textvqa/train_images/0054c91397f2fe05.jpg",
      "conversations": _turns("What does it say?", "stop")}, "textvqa", "image_token_missing"),
    ({"id": "stray-token", "conversations": _turns("<image>\nTell me a joke.", "No.")},
     "text", "image_token_without_image"),
    ({"id": "sharegpt_multi", "model": "",
      "conversations": _turns("Hi", "Hello! How can I help?", "Name a prime.", "7")}, "text", None),
]
IMAGES_OK = ["coco/train2017/000000000009.jpg", "gqa/images/2354786.jpg", "ocr_vqa/images/140031996.jpg",
             "textvqa/train_images/0054c91397f2fe05.jpg", "vg/VG_100K/2356347.jpg", "vg/VG_100K_2/2408483.jpg",
             "vg/VG_100K/2354786.jpg"]


@pytest.fixture
def llava665k(tmp_path):
    root = tmp_path / "llava"
    images = root / "images"
    for rel in IMAGES_OK:
        _jpeg(images / rel)
    (images / "coco/train2017/000000000025.jpg").write_bytes(b"")
    (images / "coco/train2017/000000000030.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    pool = root / "llava_v1_5_mix665k.json"
    pool.write_text(json.dumps([r for r, _, _ in SAMPLE_665K], indent=1))
    return pool, images


def _cfg(pool, image_root, source="llava665k", **validation):
    return {"source": source, "pool": str(pool), "image_root": str(image_root), "benchmarks": BENCH,
            # the fixtures are mostly broken records on purpose: no cap on the dropped fraction
            "validation": {"duplicate_ids": "allow", "broken_records": "drop", "images": "open",
                           "max_dropped_fraction": 1.0, **validation}}


def _expected_kept(skip_kinds=()):
    return [row for row, (_, _, kind) in enumerate(SAMPLE_665K) if kind is None or kind in skip_kinds]


def test_665k_published_records_keep_fields_and_gain_metadata(llava665k, tmp_path):
    pool, images = llava665k
    manifest = prepare(_cfg(pool, images), tmp_path / "out")
    data = DataDir(tmp_path / "out")
    kept = _expected_kept()
    assert manifest["pool_size"] == len(data.pool) == len(kept)
    assert manifest["metadata_fields"] == ["row", "source", "sha"] and manifest["source"] == "llava665k"
    for record, row in zip(data.pool, kept):
        original, source, _ = SAMPLE_665K[row]
        assert original_record(record, manifest["metadata_fields"]) == original
        assert list(record)[: len(original)] == list(original)  # original fields first, in their order
        assert (record["row"], record["source"]) == (row, source)
        assert re.fullmatch(r"[0-9a-f]{16}", record["sha"]) and record["sha"] == record_sha(original)
    assert data.pool[0]["sha"] != data.pool[1]["sha"]  # same id and image, different conversations
    assert (data.image_root / data.pool[0]["image"]).is_file()


def test_665k_report_counts_and_examples(llava665k, tmp_path):
    pool, images = llava665k
    prepare(_cfg(pool, images), tmp_path / "out")
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    broken = {row: kind for row, (_, _, kind) in enumerate(SAMPLE_665K) if kind}
    assert report["total"] == len(SAMPLE_665K) and report["dropped"] == len(broken)
    assert {k: v["count"] for k, v in report["problems"].items()} == {kind: 1 for kind in broken.values()}
    for row, kind in broken.items():
        (example,) = report["problems"][kind]["first"]
        assert (example["file"], example["row"], example["id"]) == (str(pool), row, SAMPLE_665K[row][0]["id"])
    assert report["sources"]["coco"] == {"total": 5, "kept": 2, "dropped": 3}
    assert report["sources"]["text"] == {"total": 3, "kept": 2, "dropped": 1}
    assert sum(s["total"] for s in report["sources"].values()) == len(SAMPLE_665K)
    dup = report["statistics"]["duplicate_ids"]
    assert (dup["ids_repeated"], dup["records_sharing_an_id"]) == (2, 4)
    assert dup["first"][0] == {"id": "000000000009", "records": 2, "rows": [0, 1], "sources": ["coco"]}
    assert dup["first"][1]["sources"] == ["gqa", "vg"]
    trailing = report["statistics"]["trailing_image_token"]
    assert trailing["count"] == 1 and trailing["first"][0]["row"] == 4
    assert report["statistics"]["unknown_image_source"]["count"] == 0


@pytest.mark.parametrize("mode, also_kept", [
    ("exists", ("unreadable_image",)),  # a corrupt file is there and not empty: only open notices
    ("none", ("unreadable_image", "empty_image", "missing_image")),
])
def test_image_check_modes(llava665k, tmp_path, mode, also_kept):
    pool, images = llava665k
    prepare(_cfg(pool, images, images=mode), tmp_path / "out")
    assert [r["row"] for r in DataDir(tmp_path / "out").pool] == _expected_kept(also_kept)


def test_fail_policy_names_file_row_and_id_and_leaves_nothing(llava665k, tmp_path):
    pool, images = llava665k
    out = tmp_path / "results" / "data"
    # the first broken record (an image problem), and how many more there are of every kind
    broken = sum(kind is not None for _, _, kind in SAMPLE_665K)
    with pytest.raises(PoolError, match=rf"{re.escape(str(pool))}: record 9 \(id 'missing-1'\): .*image file not "
                                        rf"found \({broken - 1} more broken records;"):
        prepare(_cfg(pool, images, broken_records="fail"), out)
    assert not list((tmp_path / "results").iterdir())
    records = [r for r, _, kind in SAMPLE_665K if kind in (None, "no_conversations")]
    pool.write_text(json.dumps(records))
    with pytest.raises(PoolError, match=r": record \d+ \(id 'no-conv'\): no conversations"):
        prepare(_cfg(pool, images, broken_records="fail"), out)
    records = [r for r, _, kind in SAMPLE_665K if kind in (None, "missing_image", "empty_image")]
    pool.write_text(json.dumps(records))
    with pytest.raises(PoolError, match=r"record 9 \(id 'missing-1'\): .*2370000\.jpg: image file not found"):
        prepare(_cfg(pool, images, broken_records="fail"), out)
    assert not list((tmp_path / "results").iterdir())


def test_duplicate_id_policies(llava665k, tmp_path):
    pool, images = llava665k
    with pytest.raises(PoolError, match=r"duplicate id '000000000009' in records \[0, 1\] \(2 ids repeated"):
        prepare(_cfg(pool, images, duplicate_ids="fail"), tmp_path / "a")
    prepare(_cfg(pool, images, duplicate_ids="drop"), tmp_path / "b")
    rows = [r["row"] for r in DataDir(tmp_path / "b").pool]
    assert rows == [r for r in _expected_kept() if r not in (1, 8)]  # the later record of each repeated id
    report = json.loads((tmp_path / "b" / "validation.json").read_text())
    assert report["problems"]["duplicate_ids"]["count"] == 2
    assert report["problems"]["duplicate_ids"]["first"][0]["row"] == 1


def test_generic_llava_source_is_665k(llava665k, tmp_path):
    pool, images = llava665k
    manifest = prepare(_cfg(pool, images, source="llava"), tmp_path / "out")
    assert manifest["source"] == "llava665k" and DataDir(tmp_path / "out").pool[2]["source"] == "gqa"


def test_unknown_validation_setting_is_an_error(llava665k, tmp_path):
    pool, images = llava665k
    with pytest.raises(ValueError, match=r"validation\.images: 'decode'"):
        prepare(_cfg(pool, images, images="decode"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# Vision-Flan: records carry task_name; image files are "<task_name>_<…>" in one flat folder
TASKS = ["PACS+guitar_image_category_classification", "VQA", "VQA_counting", "MEMOTION+sentiment_detection"]


@pytest.fixture
def vision_flan(tmp_path):
    root = tmp_path / "vision_flan"
    images = root / "images_191task_1k"
    records, expected = [], []
    for t, task in enumerate(TASKS):
        for i in range(2):
            image = f"{task}_{i}_COCO_train2014_{t:06d}{i:06d}.jpg"
            _jpeg(images / image, (t * 50, i * 100, 80))
            records.append({"id": str(i), "image": image, "task_name": task,  # ids repeat across tasks
                            "conversations": _turns(f"<image>\nTask {task}. Options: (a) x (b) y", "(a) x")})
            expected.append(task)
    _jpeg(images / "VQA_counting_COCO_train2014_000000000077.jpg")
    records.append({"id": "77", "image": "VQA_counting_COCO_train2014_000000000077.jpg",  # no task_name
                    "conversations": _turns("<image>\nHow many dogs?", "two")})
    expected.append("VQA_counting")  # the longest task the file name starts with (also starts with "VQA_")
    _jpeg(images / "mystery_1.jpg")
    records.append({"id": "78", "image": "mystery_1.jpg", "conversations": _turns("<image>\nWhat?", "That.")})
    expected.append(None)
    _jpeg(images / "renamed_1.jpg")
    records.append({"id": "79", "image": "renamed_1.jpg", "task_name": "VQA",
                    "conversations": _turns("<image>\nIs it sunny?", "yes")})
    expected.append("VQA")
    pool = root / "annotation_191-task_1k.json"
    pool.write_text(json.dumps(records))
    return pool, images, records, expected


def test_vision_flan_tasks_metadata_and_report(vision_flan, tmp_path):
    pool, images, records, expected = vision_flan
    manifest = prepare(_cfg(pool, images, source="vision_flan"), tmp_path / "out")
    published = DataDir(tmp_path / "out").pool
    kept = [row for row, task in enumerate(expected) if task is not None]
    assert manifest["metadata_fields"] == ["row", "source", "task", "sha"]
    assert [r["row"] for r in published] == kept
    for record in published:
        assert record["task"] == record["source"] == expected[record["row"]]
        assert original_record(record, manifest["metadata_fields"]) == records[record["row"]]
    report = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert report["problems"]["no_task"]["count"] == 1
    assert report["problems"]["no_task"]["first"][0] == {
        "file": str(pool), "row": 9, "id": "78",
        "detail": "no task_name field and the image file name starts with no known task"}
    stats = report["statistics"]
    assert stats["tasks"] == len(TASKS) and stats["task_from"] == {"task_name": 9, "image": 1}
    assert stats["task_image_mismatch"]["count"] == 1 and stats["task_image_mismatch"]["first"][0]["row"] == 10
    assert report["sources"]["VQA_counting"] == {"total": 3, "kept": 3, "dropped": 0}
    assert report["sources"]["VQA"]["total"] == 3
    assert stats["duplicate_ids"]["ids_repeated"] == 2  # "0" and "1" in every task


def test_vision_flan_without_any_task_name_is_refused(vision_flan, tmp_path):
    pool, images, records, _ = vision_flan
    pool.write_text(json.dumps([{k: v for k, v in r.items() if k != "task_name"} for r in records]))
    with pytest.raises(PoolError, match=rf"{re.escape(str(pool))}: no record has a task_name field"):
        prepare(_cfg(pool, images, source="vision_flan"), tmp_path / "out")
    assert not list(tmp_path.glob(".out*")) and not (tmp_path / "out").exists()



def test_vision_flan_images_with_a_folder_prefix_are_not_silently_dropped(vision_flan, tmp_path):
    """The release's image values are flat file names inside images_191task_1k/ (COINCIDE's and TinyLLaVA's
    scripts join that folder and the value). Values that carry the folder again, with image_root set to the
    folder, would make every image "missing" and `drop` would publish a near-empty pool: it stops, saying where
    the root should point."""
    pool, images, records, _ = vision_flan
    prefixed = [{**r, "image": f"{images.name}/{r['image']}"} if row < 8 else r for row, r in enumerate(records)]
    pool.write_text(json.dumps(prefixed))
    cfg = _cfg(pool, images, source="vision_flan", images="exists", max_dropped_fraction=0.1)
    with pytest.raises(PoolError, match=rf"validation would drop 9 of 11 records .*the image values start "
                                        rf"with '{images.name}/', the image root's own folder name: set "
                                        rf"image_root to {re.escape(str(images.parent))}"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    pool.write_text(json.dumps([{**r, "image": f"{images.name}/{r['image']}"} for r in records]))
    manifest = prepare({**cfg, "image_root": str(images.parent)}, tmp_path / "out")
    assert manifest["pool_size"] == 10  # as with flat names: only the record without a task is dropped

def test_export_subset_writes_original_records_in_row_order(llava665k, tmp_path):
    pool, images = llava665k
    prepare(_cfg(pool, images), tmp_path / "data")
    data = DataDir(tmp_path / "data")
    rows = [7, 0, 4]
    subset = tmp_path / "subsets" / "random_0.1_0.json"
    subset.parent.mkdir()
    subset.write_text(json.dumps({"ids": [data.pool[r]["id"] for r in rows], "rows": rows}))
    subset.with_suffix(".meta.json").write_text(json.dumps({"pool_sha256": data.pool_hash()}))
    out = tmp_path / "export" / "subset.json"
    out.parent.mkdir()
    summary = export_subset(tmp_path / "data", subset, out)
    written = json.loads(out.read_text())
    assert written == [SAMPLE_665K[data.pool[r]["row"]][0] for r in sorted(rows)]
    assert summary["records"] == 3 and summary["text_only"] == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["subset.json"]


@pytest.mark.parametrize("change, message", [
    (lambda s, m: s.update(ids=["wrong"] + s["ids"][1:]), r"row 7 is id 'i6IyJda_0' .* says 'wrong'"),
    (lambda s, m: s.update(rows=[0, 999], ids=None), r"rows \[999\] outside the pool of 10"),
    (lambda s, m: m.update(pool_sha256="0" * 64), r"pool_sha256 000000000000… differs"),
])
def test_export_subset_refuses_a_foreign_subset(llava665k, tmp_path, change, message):
    pool, images = llava665k
    prepare(_cfg(pool, images), tmp_path / "data")
    data = DataDir(tmp_path / "data")
    sub, meta = {"ids": [data.pool[7]["id"], data.pool[8]["id"]], "rows": [7, 8]}, {"pool_sha256": data.pool_hash()}
    change(sub, meta)
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps(sub))
    subset.with_suffix(".meta.json").write_text(json.dumps(meta))
    with pytest.raises(PoolError, match=message):
        export_subset(tmp_path / "data", subset, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_validate_records_directly_with_sources(tmp_path):
    records = [{"id": "a", "conversations": _turns("q", "a")}, {"id": "b", "conversations": []}]
    policy = {"broken_records": "drop", "max_dropped_fraction": 1.0}
    rows, report = validate_records(records, tmp_path, policy, file="x.json", sources=["text", "text"])
    assert rows == [0] and report.as_dict()["sources"] == {"text": {"total": 2, "kept": 1, "dropped": 1}}
    with pytest.raises(PoolError, match="x.json: no usable record left"):
        validate_records(records[1:], tmp_path, policy, file="x.json")


def test_truncation_report_counts_fully_masked_and_image_cut(tmp_path):
    from selectbench.models.conversation import VicunaV1
    from selectbench.embedded.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(["USER: ASSISTANT: what is this a cat yes no"] * 5, 300, tmp_path / "tok")
    template = VicunaV1(tokenizer, image_seq_length=4, system="", max_length=40)
    records = [
        {"id": "short", "conversations": _turns("what is this", "a cat")},
        {"id": "long-question", "row": 17, "conversations": _turns("what is this " * 30, "a cat")},
        {"id": "long-answer", "conversations": _turns("what", "a cat " * 30)},
        {"id": "late-image", "image": "x.jpg", "conversations": _turns("what is this " * 2 + "\n<image>", "yes")},
    ]
    report = truncation_report(records, template)
    assert (report["records"], report["truncated"], report["fully_masked"], report["image_cut"]) == (4, 2, 1, 0)
    assert report["first"]["fully_masked"] == [{"index": 1, "row": 17, "id": "long-question"}]
    # the image placeholder moves to the front, so only a max_length shorter than the prefix cuts through it
    report = truncation_report(records[3:], VicunaV1(tokenizer, image_seq_length=60, system="", max_length=40))
    assert report["image_cut"] == 1 and report["first"]["image_cut"][0]["id"] == "late-image"


def test_paper_scale_task_validation_sets_are_linked_and_checked(llava665k, tmp_path):
    pool, images = llava665k
    val_dir, val_images = tmp_path / "val", tmp_path / "val_images"
    _jpeg(val_images / "g1.jpg")
    val_dir.mkdir()
    good = [{"id": "gqa-val-0", "image": "g1.jpg", "conversations": _turns("<image>\nIs it red?", "Yes")}]
    (val_dir / "gqa.json").write_text(json.dumps(good))
    cfg = {**_cfg(pool, images), "task_validation": {"dir": str(val_dir), "image_root": str(val_images),
                                                      "tasks": ["gqa"]}}
    prepare(cfg, tmp_path / "out")
    data = DataDir(tmp_path / "out")
    assert data.validation_tasks() == ["gqa"]
    assert data.validation_items("gqa") == good
    assert (data.validation_image_root / "g1.jpg").exists()

    broken = good + [{"id": "gqa-val-1", "image": "missing.jpg", "conversations": _turns("<image>\nQ?", "A")}]
    (val_dir / "gqa.json").write_text(json.dumps(broken))
    with pytest.raises(PoolError, match=r"gqa\.json: record 1 \(id 'gqa-val-1'\).*not found"):
        prepare(cfg, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
