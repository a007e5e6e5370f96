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


def check_yaml(path: Path | str) -> None:
    """ValueError naming the file, line and column of a YAML syntax error: Snakemake's `configfile:` loader says
    only "Config file is not valid JSON or YAML", pointing at the Snakefile's line instead."""
    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:
        def at(mark):
            return f"line {mark.line + 1} column {mark.column + 1}"

        opened = f" ({err.context} at {at(err.context_mark)})" if err.context and err.context_mark else ""
        where = f" at {at(err.problem_mark)}" if err.problem_mark else ""
        raise ValueError(f"{path}: not valid YAML{where}: {err.problem}{opened}") from None


def check_together(config: dict[str, Any]) -> None:
    """Settings that are valid alone but not together, which the schema cannot say; found when the DAG is planned
    rather than by a job that waits for hours of other jobs (the warm-up's start waits for the proxy fine-tune)."""
    warmup = config.get("gradient_warmup") or {}
    saved = config["models"]["proxy"]["finetune"].get("checkpoints")
    index = warmup.get("checkpoint", 0)
    if warmup.get("start") == "proxy_checkpoint" and saved and not -saved <= index < saved:
        raise ValueError(f"gradient_warmup.checkpoint: {index} is not an index into the {saved} checkpoints of "
                         "models.proxy.finetune.checkpoints")


def typed_command_line(config: dict[str, Any], given: dict[str, Any]) -> None:
    """Give `--config` values their YAML types: Snakemake reads `seeds=[0,1,2]` as a list of strings ('0'), which
    the schema then rejects. Only the keys given on the command line are retyped; config files are typed already."""

    def retype(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return yaml.safe_load(value)
            except yaml.YAMLError:
                return value
        if isinstance(value, list):
            return [retype(v) for v in value]
        if isinstance(value, dict):
            return {k: retype(v) for k, v in value.items()}
        return value

    def apply(target: dict[str, Any], values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                apply(target[key], value)
            else:
                target[key] = retype(value)

    apply(config, given)


def select_run(config: dict[str, Any]) -> None:
    """Narrow one run without editing a config file: `run_methods` keeps only those entries of `methods:` and
    `run_benchmarks` only those benchmarks of every dataset (a config merge cannot remove keys). Names that the
    configuration does not define are an error, so a typo never silently runs nothing."""
    keep = config.get("run_methods")
    if keep is not None:
        unknown = sorted(set(keep) - set(config["methods"]))
        if unknown:
            raise ValueError(f"run_methods: {unknown} are not under methods: (configured: {sorted(config['methods'])})")
        config["methods"] = {name: spec for name, spec in config["methods"].items() if name in keep}
    keep = config.get("run_benchmarks")
    if keep is not None:
        known = {b for ds in config["datasets"].values() for b in ds["benchmarks"]}
        unknown = sorted(set(keep) - known)
        if unknown:
            raise ValueError(f"run_benchmarks: {unknown} are not benchmarks of any dataset (configured: "
                             f"{sorted(known)})")
        for name, ds in config["datasets"].items():
            ds["benchmarks"] = [b for b in ds["benchmarks"] if b in keep]
            if not ds["benchmarks"]:
                raise ValueError(f"run_benchmarks: leaves dataset {name} with none of its benchmarks")
