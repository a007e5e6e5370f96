"""Where a pretrained part lives. A config names a part as a Hub id (read from the local cache), a folder or file,
or a folder shipped inside an installed Python package: "pkg://<package>/<path>" (the embedded default's parts,
e.g. pkg://selectbench.embedded/pretrained/target), found wherever the package is installed."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

PACKAGE_SCHEME = "pkg://"


def locate(source: str) -> str:
    """source as a from_pretrained argument: a package resource becomes its path on disk; anything else is left
    as it is."""
    source = str(source)
    if not source.startswith(PACKAGE_SCHEME):
        return source
    package, _, path = source[len(PACKAGE_SCHEME):].partition("/")
    if not package or not path:
        raise ValueError(f"{source!r}: a package resource is pkg://<package>/<path>")
    try:
        root = resources.files(package)
    except ModuleNotFoundError as err:
        raise FileNotFoundError(f"{source!r}: no installed package {package!r}") from err
    found = root.joinpath(path)
    if not found.is_dir() and not found.is_file():
        raise FileNotFoundError(f"{source!r}: {package} has no {path} (looked in {root})")
    return str(found)


HASH_LIMIT = 256 * 2**20  # parts up to this size are hashed by content; larger ones by name, size and mtime


def fingerprint(source: str) -> str:
    """A short digest of what a source names, for the workflow to notice when shipped or local parts change (a
    Hub id is its own fingerprint: the local cache is keyed by it)."""
    try:
        path = Path(locate(source))
    except FileNotFoundError:
        return str(source)
    if not path.exists():
        return str(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    by_content = sum(p.stat().st_size for p in files) <= HASH_LIMIT
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        if by_content:
            digest.update(p.read_bytes())
        else:
            digest.update(f"{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:16]
