"""The embedded default's pretrained parts: packed from a recipe build (config/embedded_parts.yaml) with a
MANIFEST.json that records every file's sha256 and what built them, installed into the package (pretrained/),
and verified against that manifest.

    python -m selectbench.embedded.parts pack --part target=results/digits/base/target/model ... --out DIR
    python -m selectbench.embedded.parts install DIR      # DIR → selectbench/embedded/pretrained/
    python -m selectbench.embedded.parts verify           # the shipped files still match their manifest
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from selectbench.io import atomic_dir, atomic_write_json

MANIFEST = "MANIFEST.json"
VERSIONED = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "scikit-learn", "pillow")
# what a saved part is made of; training checkpoints and logs beside them are not shipped
SHIPPED_SUFFIXES = (".json", ".safetensors", ".jinja", ".txt")


def shipped_dir() -> Path:
    return Path(str(resources.files("selectbench.embedded").joinpath("pretrained")))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def pack(parts: dict[str, Path], out_dir: Path, built_by: dict[str, Any]) -> dict:
    """Copy each part's saved model files into out_dir/<name>/ and write the manifest."""
    manifest: dict[str, Any] = {"parts": {}, "built_by": {
        **built_by, "git_commit": _git_commit(), "python": platform.python_version(), "machine": platform.machine(),
        "versions": {name: metadata.version(name) for name in VERSIONED}}}
    with atomic_dir(Path(out_dir)) as tmp:
        for name, src in sorted(parts.items()):
            src = Path(src)
            files = sorted(p for p in src.iterdir()
                           if p.is_file() and p.name.endswith(SHIPPED_SUFFIXES) and p.name != "train_summary.json")
            if not files:
                raise FileNotFoundError(f"{src}: no saved model files for part {name!r}")
            (tmp / name).mkdir()
            for f in files:
                shutil.copyfile(f, tmp / name / f.name)
            # the build's summary (losses, epochs, seconds) goes into the manifest, not beside the weights
            summary = next((p for p in (src.parent / "train_summary.json", src / "train_summary.json") if p.exists()),
                           None)
            manifest["parts"][name] = {
                "files": {f.name: sha256(f) for f in files},
                "summary": _summary(summary) if summary else None}
        atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


def _summary(path: Path) -> dict[str, Any]:
    """The build's own summary of a part, less its per-step loss log."""
    summary = json.loads(path.read_text())
    return {k: v for k, v in summary.items() if k not in ("loss_log", "truncation")}


def verify(root: Path) -> dict:
    """Every file the manifest lists is there with its sha256; raises naming the first that is not."""
    root = Path(root)
    manifest = json.loads((root / MANIFEST).read_text())
    for name, part in manifest["parts"].items():
        for file, digest in part["files"].items():
            path = root / name / file
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed in {root / MANIFEST} but missing")
            if sha256(path) != digest:
                raise ValueError(f"{path}: sha256 differs from {root / MANIFEST} (rebuilt without installing?)")
    return manifest


def install(src: Path, dest: Path | None = None) -> dict:
    """Verify a packed build and copy it over the shipped parts."""
    manifest = verify(Path(src))
    dest = Path(dest) if dest else shipped_dir()
    with atomic_dir(dest) as tmp:
        shutil.copytree(Path(src), tmp, dirs_exist_ok=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m selectbench.embedded.parts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--part", action="append", required=True, help="name=saved model folder")
    p.add_argument("--config", required=True, help="the recipe's settings (JSON, or @file)")
    p.add_argument("--built-by", default="", help="the command that built the parts")
    p.add_argument("--out", required=True)
    p = sub.add_parser("install")
    p.add_argument("src")
    sub.add_parser("verify")
    a = parser.parse_args(argv)
    if a.action == "pack":
        from selectbench.config import read_settings

        parts = dict(item.split("=", 1) for item in a.part)
        pack({k: Path(v) for k, v in parts.items()}, Path(a.out), {"command": a.built_by, "config": read_settings(a.config)})
    elif a.action == "install":
        install(Path(a.src))
        print(f"installed {a.src} into {shipped_dir()}")
    else:
        manifest = verify(shipped_dir())
        print(f"{shipped_dir()}: {sum(len(p['files']) for p in manifest['parts'].values())} files match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
