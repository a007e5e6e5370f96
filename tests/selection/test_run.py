import json

import numpy as np

from selectbench.selection.registry import discover, expand
from selectbench.selection.run import score, select
from tests.conftest import ROOT

METHODS = str(ROOT / "methods")


def _instance(name):
    return expand({name: {}}, discover(METHODS))[0]


def test_random_subset_exact_size_deterministic_and_documented(tmp_path, tiny_data):
    inst = _instance("random")
    score(METHODS, tiny_data, "digits", inst, {}, tmp_path / "random.npz")
    metas = []
    for run in ("a", "b"):
        metas.append(select(METHODS, tiny_data, "digits", inst, tmp_path / "random.npz", 0.25, 3, tmp_path / f"{run}.json"))
    a, b = (json.loads((tmp_path / f"{run}.json").read_text()) for run in ("a", "b"))
    assert a == b
    assert len(a["rows"]) == len(set(a["rows"])) == 60
    assert a["ids"] == [tiny_data.pool[r]["id"] for r in a["rows"]]
    other = select(METHODS, tiny_data, "digits", inst, tmp_path / "random.npz", 0.25, 4, tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["rows"] != a["rows"]
    sidecar = json.loads((tmp_path / "a.meta.json").read_text())
    for key in ("method", "parameters", "ratio", "seed", "pool_sha256", "versions", "size"):
        assert key in sidecar
    assert sidecar["size"] == 60 and sidecar["versions"]["torch"] and other["seed"] == 4


def test_full_reference_takes_everything(tmp_path, tiny_data):
    inst = _instance("full")
    score(METHODS, tiny_data, "digits", inst, {}, tmp_path / "full.npz")
    meta = select(METHODS, tiny_data, "digits", inst, tmp_path / "full.npz", 1.0, 0, tmp_path / "full.json")
    assert meta["size"] == len(tiny_data.pool)
    assert json.loads((tmp_path / "full.json").read_text())["rows"] == list(np.arange(len(tiny_data.pool)))
