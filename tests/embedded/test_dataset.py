import hashlib
import json
from collections import Counter

import numpy as np
from PIL import Image

from selectbench.data.validate import image_problem, structure_problems
from selectbench.embedded.dataset import EVAL_BUILDERS

BENCHMARKS = tuple(EVAL_BUILDERS)



def _problems(record, image_root):
    """Every problem prepare's checks find in one record, its image included."""
    problem = image_problem(image_root / record["image"], "open") if "image" in record else None
    return structure_problems(record) + ([problem] if problem else [])


def test_pool_is_llava_format_with_text_only_and_multi_turn(tiny_data):
    pool = tiny_data.pool
    assert len(pool) == 240
    assert len({r["id"] for r in pool}) == len(pool)
    text_only = [r for r in pool if "image" not in r]
    multi_turn = [r for r in pool if len(r["conversations"]) > 2]
    assert text_only and multi_turn
    for r in pool:
        assert not _problems(r, tiny_data.image_root)
        first = r["conversations"][0]["value"]
        assert first.startswith("<image>\n") == ("image" in r)


def test_families_are_uneven_and_redundant(tiny_data):
    families = Counter(r["family"] for r in tiny_data.pool)
    assert families.most_common(1)[0][1] >= 3 * min(families.values())
    conversations = Counter(json.dumps(r["conversations"]) for r in tiny_data.pool)
    assert max(conversations.values()) > 1  # exact repeats exist on purpose


def test_evaluation_sets_use_only_held_out_images(tiny_data):
    pool_images = {r["image"] for r in tiny_data.pool if "image" in r}
    for name in BENCHMARKS:
        items = tiny_data.eval_items(name)
        assert items, name
        assert all(it["image"].startswith("eval/") for it in items)
        assert not pool_images & {it["image"] for it in items}


def test_benchmark_shapes(tiny_data):
    pope = tiny_data.eval_items("pope")
    assert {it["split"] for it in pope} == {"random", "popular", "adversarial"}
    assert {it["answer"] for it in pope} == {"yes", "no"}
    assert all(len(it["answers"]) == 10 for it in tiny_data.eval_items("vqav2"))
    assert all(len(it["answers"]) == 10 for it in tiny_data.eval_items("textvqa"))
    assert all(len(it["options"]) == 4 for it in tiny_data.eval_items("mmbench"))


def test_generation_is_deterministic(tmp_path, tiny_config):
    from selectbench.embedded.dataset import write_embedded

    cfg = tiny_config["datasets"]["digits"]["embedded"]
    a = write_embedded(tmp_path / "a", cfg, list(BENCHMARKS))
    b = write_embedded(tmp_path / "b", cfg, list(BENCHMARKS))
    assert a == b
    assert (tmp_path / "a/pool.json").read_text() == (tmp_path / "b/pool.json").read_text()
    assert (tmp_path / "a/images/pool/000001.png").read_bytes() == (tmp_path / "b/images/pool/000001.png").read_bytes()


def test_several_questions_about_one_image_share_a_record(tiny_data, tiny_config):
    low, _ = tiny_config["datasets"]["digits"]["embedded"]["questions_per_record"]["presence"]
    presence = [r for r in tiny_data.pool if r["family"] == "presence"]
    turns = [len(r["conversations"]) // 2 for r in presence]
    # repeated questions are dropped, so a record can hold fewer than asked; on average nearly as many
    assert presence and max(turns) >= low and sum(turns) / len(turns) >= 0.7 * low


def _pixels(data, rel: str) -> bytes:
    return np.asarray(Image.open(data.image_root / rel)).tobytes()


def test_validation_sets_are_small_llava_records_per_benchmark(tiny_data):
    from selectbench.embedded.dataset import VALIDATION_SIZE

    assert tiny_data.validation_tasks() == list(BENCHMARKS)
    for name in BENCHMARKS:
        records = tiny_data.validation_items(name)
        assert len(records) == VALIDATION_SIZE, name
        assert len({r["id"] for r in records}) == len(records)
        for r in records:
            assert not _problems(r, tiny_data.validation_image_root)
            assert len(r["conversations"]) == 2 and r["image"].startswith("task_validation/")
    pope = [r["conversations"][1]["value"] for r in tiny_data.validation_items("pope")]
    assert sorted(Counter(pope).values()) == [VALIDATION_SIZE // 2] * 2  # balanced Yes / No, as POPE is
    mmbench = tiny_data.validation_items("mmbench")[0]["conversations"]
    assert "\nA. " in mmbench[0]["value"] and mmbench[1]["value"][:3] in ("A. ", "B. ", "C. ", "D. ")


def test_validation_examples_are_disjoint_from_the_evaluation_sets(tiny_data):
    """No validation image repeats an evaluation (or pool) image, by file or by pixels, so no question
    instance of a test set is among the validation examples."""
    eval_files = {it["image"] for name in BENCHMARKS for it in tiny_data.eval_items(name)}
    eval_pixels = {_pixels(tiny_data, rel) for rel in eval_files}
    pool_files = {r["image"] for r in tiny_data.pool if "image" in r}
    eval_questions = {(_pixels(tiny_data, it["image"]), it["question"])
                      for name in BENCHMARKS for it in tiny_data.eval_items(name)}
    for name in BENCHMARKS:
        for r in tiny_data.validation_items(name):
            pixels = _pixels(tiny_data, r["image"])
            assert r["image"] not in eval_files | pool_files
            assert pixels not in eval_pixels
            question = r["conversations"][0]["value"].removeprefix("<image>\n")
            assert (pixels, question) not in eval_questions


def test_validation_sets_do_not_move_the_pool_or_the_evaluation_sets(tmp_path, tiny_config):
    """Validation items come from their own RNG stream: changing their size changes nothing else."""
    from selectbench.embedded.dataset import write_embedded

    cfg = tiny_config["datasets"]["digits"]["embedded"]

    def digests(out, validation_size):
        manifest = write_embedded(out, {**cfg, "validation_size": validation_size}, list(BENCHMARKS))
        files = [p for p in sorted(out.rglob("*")) if p.is_file() and "task_validation" not in p.parts
                 and p.name != "manifest.json"]
        return manifest, {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    m0, none = digests(tmp_path / "none", 0)
    m3, three = digests(tmp_path / "three", {"pope": 3, "gqa": 2, "mmvet": 0})  # the others: default 8
    assert m0["task_validation"] == {}
    assert sorted(m3["task_validation"]) == sorted(set(BENCHMARKS) - {"mmvet"})
    sizes = {k: len(json.loads((tmp_path / "three" / v).read_text())) for k, v in m3["task_validation"].items()}
    assert sizes == {"pope": 3, "gqa": 2, "textvqa": 8, "vqav2": 8, "mmbench": 8}
    assert {k: v for k, v in m0.items() if k != "task_validation"} == {k: v for k, v in m3.items()
                                                                       if k != "task_validation"}
    assert none == three and any(k.startswith("eval/") for k in none) and "pool.json" in none
