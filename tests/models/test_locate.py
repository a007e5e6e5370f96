"""Where a pretrained part lives (Hub id, path or package resource), and the fingerprint the workflow keys
re-runs on."""

import pytest

from selectbench.models.locate import fingerprint, locate


def test_a_package_resource_is_found_where_the_package_is_installed():
    path = locate("pkg://selectbench.embedded/pretrained/target")
    assert path.endswith("selectbench/embedded/pretrained/target")
    assert locate("lmsys/vicuna-7b-v1.5") == "lmsys/vicuna-7b-v1.5"  # a Hub id is left to from_pretrained


@pytest.mark.parametrize("source, message", [
    ("pkg://no_such_package/x", "no installed package 'no_such_package'"),
    ("pkg://selectbench.embedded/pretrained/nothing", "selectbench.embedded has no pretrained/nothing"),
    ("pkg://selectbench.embedded", "pkg://<package>/<path>"),
])
def test_a_bad_package_resource_is_named(source, message):
    with pytest.raises((FileNotFoundError, ValueError), match=message.replace("(", r"\(").replace(")", r"\)")):
        locate(source)


def test_the_fingerprint_follows_the_content_of_a_local_part(tmp_path):
    part = tmp_path / "part"
    part.mkdir()
    (part / "model.safetensors").write_bytes(b"weights")
    before = fingerprint(str(part))
    assert fingerprint(str(part)) == before
    (part / "model.safetensors").write_bytes(b"other weights")
    assert fingerprint(str(part)) != before
    assert fingerprint("lmsys/vicuna-7b-v1.5") == "lmsys/vicuna-7b-v1.5"
