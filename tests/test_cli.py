"""The CLI the rules call: the proxy fine-tune publishes its checkpoint list; errors are clear."""

import json
import subprocess
import sys

import pytest

from selectbench.cli import main
from selectbench.embedded.tokenizer import build_tokenizer
from selectbench.training.stages import train_base


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
    """A pretrained CLIP (a local folder, a cached Hub id or a shipped part): the step checks it loads and records
    it; nothing is trained."""
    shipped = "pkg://selectbench.embedded/pretrained/clip"
    settings = tmp_path / "clip.settings.json"
    settings.write_text(json.dumps({"pretrained": shipped}))
    main(["clip", "--data", str(tiny_data.path), "--config", f"@{settings}", "--model-dir", str(tmp_path / "m"),
          "--out", str(tmp_path / "clip.json")])
    assert json.loads((tmp_path / "clip.json").read_text()) == {"source": shipped, "trained_here": False}
    assert not (tmp_path / "m").exists()


def test_a_pretrained_clip_that_cannot_be_loaded_fails_the_step(tmp_path, tiny_data):
    with pytest.raises(OSError, match="clip.pretrained '/no/such/clip'"):
        main(["clip", "--data", str(tiny_data.path), "--config", json.dumps({"pretrained": "/no/such/clip"}),
              "--model-dir", str(tmp_path / "m"), "--out", str(tmp_path / "clip.json")])
    assert not (tmp_path / "clip.json").exists()


@pytest.mark.parametrize("change, message", [
    (lambda s: s["rows"].append(s["rows"][0]), r"row \d+ repeated \(1 repeats\)"),
    (lambda s: s["rows"].append(10**6), r"rows \[1000000\] outside the pool"),
    (lambda s: s.update(rows="0,1"), r"'rows' must be a list of row indices"),
])
def test_finetune_refuses_an_edited_subset_naming_it(tmp_path, tiny_data, tiny_config, change, message):
    """A subset is read through the same checks as its export: nothing trains on a repeated or foreign row."""
    subset = {"rows": [0, 1, 2, 3]}
    change(subset)
    path = tmp_path / "r0.1_s0.json"
    path.write_text(json.dumps(subset))
    from selectbench.data.validate import PoolError

    with pytest.raises(PoolError, match=rf"{path}: {message}"):
        main(["finetune", "--data", str(tiny_data.path), "--base", str(tmp_path / "no-base"), "--model-config",
              json.dumps(tiny_config["models"]["target"]), "--subset", str(path), "--out", str(tmp_path / "ft")])
    assert not (tmp_path / "ft").exists()


def test_a_pool_edited_after_publishing_is_refused(tmp_path, tiny_data):
    import shutil

    from selectbench.data.datadir import DataDir
    from selectbench.data.validate import PoolError

    data = tmp_path / "data"
    shutil.copytree(tiny_data.path, data, symlinks=True)
    assert len(DataDir(data).pool) == len(tiny_data.pool)
    records = json.loads((data / "pool.json").read_text())
    (data / "pool.json").write_text(json.dumps(records[1:]))  # one record removed by hand
    with pytest.raises(PoolError, match=rf"{data / 'pool.json'}: changed since the prepare step published it"):
        DataDir(data).pool


def test_every_step_runs_offline_unless_the_environment_says_otherwise():
    import os

    probe = "import selectbench.cli, huggingface_hub.constants as c, datasets.config as d; " \
            "print(c.HF_HUB_OFFLINE, d.HF_DATASETS_OFFLINE)"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert run.stdout.split() == ["True", "True"], run.stderr[-2000:]
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**env, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"})
    assert run.stdout.split() == ["False", "False"], run.stderr[-2000:]
