import json
from collections import Counter

from selectbench.data.embedded import BENCHMARKS
from selectbench.data.validate import record_problems


def test_pool_is_llava_format_with_text_only_and_multi_turn(tiny_data):
    pool = tiny_data.pool
    assert len(pool) == 240
    assert len({r["id"] for r in pool}) == len(pool)
    text_only = [r for r in pool if "image" not in r]
    multi_turn = [r for r in pool if len(r["conversations"]) > 2]
    assert text_only and multi_turn
    for r in pool:
        assert not record_problems(r, tiny_data.image_root)
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
    from selectbench.data.embedded import write_embedded

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
