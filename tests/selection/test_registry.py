import numpy as np
import pytest

from selectbench.selection.base import band_indices, subset_size
from selectbench.selection.registry import MethodError, discover, expand, reference_method
from tests.conftest import ROOT

METHODS = str(ROOT / "methods")


def test_methods_are_discovered_from_the_folder():
    found = discover(METHODS)
    assert {"random", "full"} <= set(found)
    assert reference_method(found) == "full"


def test_a_dropped_in_file_becomes_a_method(tmp_path):
    (tmp_path / "longest.py").write_text(
        "import numpy as np\nfrom selectbench.selection.base import Method\n"
        "class Longest(Method):\n    name = 'longest'\n    parameters = {'band': 'high'}\n"
        "    def select(self, ctx, scores, n, seed):\n        return np.arange(n)\n")
    found = discover(str(tmp_path))
    assert list(found) == ["longest"]
    instances = expand({"longest": {"band": ["low", "high"]}}, found)
    assert [i.label for i in instances] == ["longest__band-low", "longest__band-high"]
    assert instances[0].param_dict == {"band": "low"}
    # values keep their underscores; lists join with "+"; anything else unsafe in a path is dropped
    labels = [i.label for i in expand({"perplexity": {"model": ["proxy", "target_full"]}}, discover(METHODS))]
    assert labels == ["perplexity__model-proxy", "perplexity__model-target_full"]


def test_unknown_method_and_parameter_are_rejected():
    found = discover(METHODS)
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        expand({"nope": {}}, found)
    with pytest.raises(MethodError, match="has no parameter"):
        expand({"random": {"temperature": 1}}, found)


def test_broken_plugin_names_its_file(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(MethodError, match=r"broken\.py: cannot import"):
        discover(str(tmp_path))


@pytest.mark.parametrize("ratio, n, expected", [(0.1, 665298, 66530), (0.5, 3, 2), (0.001, 100, 1), (1.0, 7, 7)])
def test_subset_size_rounds_half_up(ratio, n, expected):
    assert subset_size(ratio, n) == expected


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5])
def test_subset_size_rejects_bad_ratios(ratio):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        subset_size(ratio, 10)


def test_band_indices():
    scores = np.array([5.0, 1.0, 3.0, 4.0, 2.0])
    assert sorted(band_indices(scores, 2, "low")) == [1, 4]
    assert sorted(band_indices(scores, 2, "high")) == [0, 3]
    assert sorted(band_indices(scores, 3, "middle")) == [2, 3, 4]
