"""The text corpus of stage 0: scenes spelled one character per cell, in the configured parts."""

import json

from selectbench.data.language import build_language_corpus, text_scene
from selectbench.data.scenes import Scene


def test_text_scene_spells_one_character_per_cell():
    scene = Scene((4, -1, 8, 5, -1, -1, -1, 3, -1), (0, -1, 0, 0, -1, -1, -1, 0, -1))
    assert text_scene(scene) == "4-85---3-"


def test_parts_have_their_sizes_and_families():
    presence, mixed = build_language_corpus(
        [{"size": 200}, {"size": 400, "families": {"presence": 0.5, "grid": 0.25, "reading": 0.25}}], seed=0)
    assert len(presence) == 200 and len(mixed) == 400
    assert {r["family"] for r in presence} == {"presence"}
    families = [r["family"] for r in mixed]
    assert 60 < families.count("grid") < 140 and 60 < families.count("reading") < 140
    for r in mixed:
        if r["family"] == "reading":  # its scene has a full row, and the answer reads it
            scene = r["conversations"][0]["value"].split("\n")[0]
            assert r["conversations"][1]["value"] in [scene[i:i + 3] for i in (0, 3, 6)]
    for record in presence + mixed:
        scene, question = record["conversations"][0]["value"].split("\n", 1)
        assert len(scene) == 9 and set(scene) <= set("-0123456789") and "image" not in record
    answers = {r["conversations"][1]["value"] for r in presence}
    assert answers == {"Yes", "No"}
    # a "Yes" names a digit of the scene, a "No" one that is absent
    for r in presence:
        scene, question = r["conversations"][0]["value"].split("\n")
        digit = question.split()[3]
        assert (digit in scene) == (r["conversations"][1]["value"] == "Yes")
    assert build_language_corpus([{"size": 200}], seed=0)[0] == presence  # deterministic


def test_pool_and_eval_sets_do_not_depend_on_the_corpus(tmp_path, tiny_config):
    from selectbench.data.embedded import write_embedded

    cfg = json.loads(json.dumps(tiny_config["datasets"]["digits"]["embedded"]))
    benchmarks = tiny_config["datasets"]["digits"]["benchmarks"]
    write_embedded(tmp_path / "with", cfg, benchmarks)
    cfg["language_corpus"] = []
    manifest = write_embedded(tmp_path / "without", cfg, benchmarks)
    assert manifest["language"] == []
    for name in ["pool.json", "captions.json", "eval/pope.json", "eval/textvqa.json"]:
        assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "without" / name).read_bytes()
    assert len(json.loads((tmp_path / "with" / "language" / "part0.json").read_text())) == 40
