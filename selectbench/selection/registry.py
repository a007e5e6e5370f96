"""Discovery of method plug-ins in methods/ (and any folder `method_dirs` adds) and expansion of their parameter
grids into instances."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from selectbench.features import path_safe
from selectbench.selection.base import ARTIFACTS, Method


class MethodError(ValueError):
    """An unknown method, a bad parameter or a broken plug-in file."""


def discover(methods_dirs: str | Sequence[str]) -> dict[str, type[Method]]:
    """Every Method subclass defined in <dir>/*.py of the given folders (files starting with "_" are skipped)."""
    return _discover((methods_dirs,) if isinstance(methods_dirs, (str, Path)) else tuple(methods_dirs))


@lru_cache(maxsize=None)
def _discover(methods_dirs: tuple[str, ...]) -> dict[str, type[Method]]:
    found: dict[str, type[Method]] = {}
    paths = [p for d in methods_dirs for p in sorted(Path(d).glob("*.py"))]
    if not paths:
        raise MethodError(f"no method plug-in in {', '.join(map(str, methods_dirs))}")
    for path in paths:
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"selectbench_methods.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # noqa: BLE001 - report which plug-in is broken
            raise MethodError(f"{path}: cannot import method plug-in: {err}") from err
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Method) and obj is not Method and obj.__module__ == module.__name__:
                if not getattr(obj, "name", None):
                    raise MethodError(f"{path}: {obj.__name__} has no name")
                if obj.name in found:
                    raise MethodError(f"{path}: method name {obj.name!r} is defined twice")
                unknown = set(obj.requires) - set(ARTIFACTS) - set(obj.features)
                if unknown:
                    raise MethodError(f"{path}: {obj.name} requires unknown artifacts {sorted(unknown)}; "
                                      f"known: {list(ARTIFACTS)}")
                found[obj.name] = obj
    return found


@dataclass(frozen=True)
class Instance:
    """A method with one concrete parameter setting; `label` names it in paths and tables."""

    label: str
    method: str
    params: tuple[tuple[str, Any], ...]

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)


def expand(methods_cfg: dict[str, dict[str, Any]], available: dict[str, type[Method]]) -> list[Instance]:
    """Config {method: {param: value or [grid values]}} → instances; labels carry only the grid parameters."""
    instances: list[Instance] = []
    for name, overrides in methods_cfg.items():
        if name not in available:
            raise MethodError(f"unknown method {name!r} in config; available: {sorted(available)}")
        cls = available[name]
        overrides = overrides or {}
        unknown = set(overrides) - set(cls.parameters)
        if unknown:
            raise MethodError(f"method {name!r} has no parameter(s) {sorted(unknown)}; "
                              f"it takes {sorted(cls.parameters)}")
        merged = {**cls.parameters, **overrides}
        grid = {k: v for k, v in overrides.items() if isinstance(v, list)}
        for values in itertools.product(*grid.values()) if grid else [()]:
            params = {**merged, **dict(zip(grid, values))}
            try:
                cls.check(params)
            except ValueError as err:
                raise MethodError(f"method {name!r}: {err}") from err
            extra = set(cls.required(params)) - set(cls.requires)
            if extra:
                raise MethodError(f"method {name!r}: required() names {sorted(extra)}, which `requires` does not "
                                  "declare")
            # path-safe: labels name folders and wildcards (a list value such as layers [0, 1] reads "0+1")
            label = name + "".join(f"__{k}-{path_safe(v)}" for k, v in zip(grid, values))
            if any(i.label == label for i in instances):
                raise MethodError(f"method {name!r}: two settings share the label {label!r}; give the grid "
                                  "values that differ in more than punctuation")
            instances.append(Instance(label, name, tuple(sorted(params.items()))))
    return instances


def reference_method(available: dict[str, type[Method]]) -> str:
    refs = [name for name, cls in available.items() if cls.is_reference]
    if len(refs) != 1:
        raise MethodError(f"exactly one reference method is required in methods/, found {refs}")
    return refs[0]
