"""The scene corpus of stage 0: rendered scenes asked about in the pool's words, in the configured parts."""

import json

from PIL import Image

from selectbench.embedded.scene_corpus import build_scene_corpus
from selectbench.embedded.scenes import load_digit_banks


def _corpus(parts, saved):
    bank, _ = load_digit_banks(0.25, 0)

    def save(scene):
        saved.append(scene)
        return f"scenes/{len(saved) - 1:06d}.png"

    return build_scene_corpus(parts, 0, bank, save), bank


def test_parts_have_their_sizes_families_and_true_answers():
    scenes = []
    (presence, mixed), bank = _corpus(
        [{"size": 200}, {"size": 400, "families": {"presence": 0.5, "grid": 0.25, "reading": 0.25}}], scenes)
    assert len(presence) == 200 and len(mixed) == 400 and len(scenes) == 600
    assert {r["family"] for r in presence} == {"presence"}
    families = [r["family"] for r in mixed]
    assert 60 < families.count("grid") < 140 and 60 < families.count("reading") < 140
    by_image = {f"scenes/{k:06d}.png": s for k, s in enumerate(scenes)}
    for r in mixed:
        scene = by_image[r["image"]]
        if r["family"] == "reading":  # its scene has a full row, and the answer reads it
            rows = ["".join(map(str, scene.row(i))) for i in range(3)]
            assert r["conversations"][1]["value"] in rows
    for r in presence:
        assert r["conversations"][0]["value"].startswith("<image>\nIs there a ")
        digit = int(r["conversations"][0]["value"].split()[4])
        # a "Yes" names a digit of the scene, a "No" one that is absent; the image shows the scene
        assert (digit in by_image[r["image"]].digits) == (r["conversations"][1]["value"] == "Yes")
    assert {r["conversations"][1]["value"] for r in presence} == {"Yes", "No"}
    # every filled cell shows a training-bank image of its own digit (held-out digits stay for evaluation)
    for scene in scenes:
        for label, source in zip(scene.labels, scene.sources):
            assert (source < 0) if label < 0 else (source in bank.by_label[label])
    again = []
    assert _corpus([{"size": 200}], again)[0][0] == presence and again == scenes[:200]  # deterministic


def test_pool_and_eval_sets_do_not_depend_on_the_corpus(tmp_path, tiny_config):
    from selectbench.embedded.dataset import write_embedded

    cfg = json.loads(json.dumps(tiny_config["datasets"]["digits"]["embedded"]))
    benchmarks = tiny_config["datasets"]["digits"]["benchmarks"]
    write_embedded(tmp_path / "with", cfg, benchmarks)
    cfg["scene_corpus"] = []
    manifest = write_embedded(tmp_path / "without", cfg, benchmarks)
    assert manifest["scene_corpus"] == [] and not (tmp_path / "without" / "images" / "scenes").exists()
    for name in ["pool.json", "captions.json", "eval/pope.json", "eval/textvqa.json"]:
        assert (tmp_path / "with" / name).read_bytes() == (tmp_path / "without" / name).read_bytes()
    part0 = json.loads((tmp_path / "with" / "scene_corpus" / "part0.json").read_text())
    assert len(part0) == 40
    # every record's image was written, from the pool's digits (the held-out ones stay for evaluation)
    for record in part0:
        assert Image.open(tmp_path / "with" / "images" / record["image"]).size == (24, 24)
