"""Settings files: content-addressed, written once, read back exactly as the config had them (order included)."""

import json

from selectbench.config import read_settings, settings_file


def test_settings_keep_the_config_order_and_are_content_addressed(tmp_path):
    section = {"family_weights": {"identify": 0.26, "presence": 0.24, "compare": 0.06}}
    path = settings_file("datasets.digits", section, tmp_path)
    assert list(read_settings(f"@{path}")["family_weights"]) == ["identify", "presence", "compare"]
    assert settings_file("datasets.digits", section, tmp_path) == path
    reordered = {"family_weights": {"presence": 0.24, "identify": 0.26, "compare": 0.06}}
    assert settings_file("datasets.digits", reordered, tmp_path) != path
    assert read_settings(json.dumps(section)) == section
