"""The CLI the rules call: the proxy fine-tune publishes its checkpoint list; errors are clear."""

import json
import subprocess
import sys

from selectbench.cli import main
from selectbench.models.stages import build_tokenizer, train_base


def test_proxy_finetune_lists_its_checkpoints(tmp_path, tiny_data, tiny_config):
    build_tokenizer(tiny_data, tiny_config["tokenizer"]["vocab_size"], tmp_path / "tok")
    proxy = tiny_config["models"]["proxy"]
    train_base(tiny_data, tmp_path / "tok", proxy, 0, tmp_path / "base", 1)
    listing = tmp_path / "checkpoints.json"
    main(["finetune", "--data", str(tiny_data.path), "--base", str(tmp_path / "base"), "--model-config",
          json.dumps(proxy), "--out", str(tmp_path / "ft"), "--checkpoint-list", str(listing)])
    dirs = json.loads(listing.read_text())
    assert len(dirs) == proxy["finetune"]["checkpoints"]
    assert all((tmp_path / "ft" / "checkpoints").exists() for _ in dirs)


def test_prepare_error_names_the_file(tmp_path):
    pool = tmp_path / "pool.json"
    pool.write_text("{not json")
    cfg = {"source": "llava", "pool": str(pool), "image_root": str(tmp_path), "benchmarks": ["pope"]}
    run = subprocess.run([sys.executable, "-m", "selectbench.cli", "prepare", "--dataset-config", json.dumps(cfg),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode != 0
    assert f"{pool}: malformed JSON" in run.stderr
    assert not (tmp_path / "out").exists()


def test_clip_step_points_at_a_pretrained_clip_without_training(tmp_path, tiny_data):
    """Paper scale names a pretrained CLIP (a local folder or a cached Hub id): the step only records it."""
    main(["clip", "--data", str(tiny_data.path), "--tokenizer", str(tmp_path / "unused"), "--config",
          json.dumps({"pretrained": "/models/clip-vit-large-patch14-336"}), "--model-dir", str(tmp_path / "m"),
          "--out", str(tmp_path / "clip.json")])
    assert json.loads((tmp_path / "clip.json").read_text()) == {"source": "/models/clip-vit-large-patch14-336",
                                                                  "trained_here": False}
    assert not (tmp_path / "m").exists()
