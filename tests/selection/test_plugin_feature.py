"""A method file outside methods/ (config `method_dirs`) that declares its own per-example feature: the DAG
shards, gathers and caches that feature like the built-in ones, and the method selects from it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import yaml

from tests.conftest import ROOT, TINY

PLUGINS = ROOT / "tests" / "plugins"


def test_a_plugin_feature_is_sharded_gathered_and_used(tmp_path):
    override = tmp_path / "plugin.yaml"
    override.write_text(yaml.safe_dump({"method_dirs": [str(PLUGINS)], "methods": {"brightness": {}}}))
    target = "results/digits/subsets/brightness/r0.5_s0.json"
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2",
                          "--configfile", str(TINY), str(override), "--directory", str(tmp_path), target],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    feature = tmp_path / "results/digits/features/image_brightness"
    assert sorted(p.name for p in feature.glob("default/shard*.npz")) == ["shard0-of-2.npz", "shard1-of-2.npz"]
    gathered = np.load(feature / "default.npz")
    pool = json.loads((tmp_path / "results/digits/data/pool.json").read_text())
    assert gathered["covered"].all() and len(gathered["brightness"]) == len(pool)
    has_image = np.array(["image" in r for r in pool])
    assert np.isfinite(gathered["brightness"][has_image]).all() and np.isnan(gathered["brightness"][~has_image]).all()
    rows = json.loads((tmp_path / target).read_text())["rows"]
    brightness = gathered["brightness"][:, 0]
    assert len(rows) == round(0.5 * len(pool))
    assert np.nanmin(brightness[rows]) == np.sort(brightness[has_image])[::-1][len(rows) - 1]  # the high band
