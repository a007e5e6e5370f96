"""Plan-time helpers for the workflow's configuration: every seam entry it names exists (selectbench.registry) and
its section passes that entry's own schema, and settings files that let jobs read their configuration from disk
instead of multi-kilobyte JSON on the command line. Import-light: the Snakefile calls this when it plans."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from selectbench import registry
from selectbench.io import atomic_write_text

SETTINGS_DIR = Path("results") / "settings"


def seam_choices(config: dict[str, Any]) -> list[tuple[str, str | None, dict[str, Any], str]]:
    """(seam, name, section, config key) for every registry choice a configuration makes."""
    # a source's own settings sit under its name (datasets.<d>.embedded for the embedded source)
    out = [("source", ds.get("source"), ds.get(ds.get("source") or "") or {}, f"datasets.{name}.source")
           for name, ds in config["datasets"].items()]
    out += [("builder", role.get("builder"), role.get("recipe") or {}, f"models.{name}.builder")
            for name, role in config["models"].items()]
    out.append(("clip_builder", config.get("clip", {}).get("builder"), config.get("clip", {}), "clip.builder"))
    out.append(("evaluator", config["evaluation"].get("backend"), config["evaluation"], "evaluation.backend"))
    return out


def check_seams(config: dict[str, Any]) -> None:
    """Unknown entries and sections that fail their entry's schema stop the run before anything starts."""
    import jsonschema

    needs_tokenizer = False
    for seam, name, section, where in seam_choices(config):
        name = registry.check(seam, name, where)
        needs_tokenizer |= registry.needs_tokenizer(seam, name)
        ref = registry.SCHEMAS.get((seam, name))
        if ref:
            try:
                jsonschema.validate(section, _schema(ref))
            except jsonschema.ValidationError as err:
                path = ".".join(str(p) for p in err.absolute_path)
                raise ValueError(f"{where} {name!r}: its settings fail {ref} at '{path}': {err.message}") from None
    if needs_tokenizer:
        try:
            jsonschema.validate(config.get("tokenizer"), _schema(registry.TOKENIZER_SCHEMA))
        except jsonschema.ValidationError as err:
            raise ValueError(f"tokenizer: a builder trains on the dataset's tokenizer: {err.message}") from None


def _schema(ref: str) -> dict[str, Any]:
    package, _, rest = ref.partition(":")
    file, _, definition = rest.partition("#")
    return yaml.safe_load(resources.files(package).joinpath(file).read_text())[definition]


def settings_file(name: str, section: Any, root: Path = SETTINGS_DIR) -> str:
    """A config section as a JSON file named by its content (results/settings/<name>-<digest>.json), written once;
    a job reads it through the CLI's "@file" form. The name changes when the content does, so Snakemake's params
    trigger notices exactly the changes a job depends on."""
    # key order is kept: it can matter (the embedded source draws families in the order the config lists them)
    text = json.dumps(section, indent=1)
    path = Path(root) / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    if not path.exists():
        atomic_write_text(path, text)
    return str(path)


def read_settings(text: str) -> Any:
    """A job's settings argument: inline JSON, or "@path" naming a JSON file (settings_file)."""
    if text.startswith("@"):
        return json.loads(Path(text[1:]).read_text())
    return json.loads(text)
