"""Plan-time checks of method parameters (Method.check), one message shape for every method:
"<key> must be <what>, got <value>". YAML's true and false are ints to isinstance: they are refused as numbers."""

from __future__ import annotations

from typing import Any, Iterable


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(params: dict[str, Any], key: str, low: int = 1, optional: bool = False) -> None:
    """params[key] an integer ≥ low (or None where optional)."""
    value = params[key]
    if optional and value is None:
        return
    if not is_integer(value) or value < low:
        what = "a positive integer" if low == 1 else f"an integer ≥ {low}"
        raise ValueError(f"{key} must be {what}{' or null' if optional else ''}, got {value!r}")


def number(params: dict[str, Any], key: str, low: float = 0.0, high: float | None = None,
           strict: bool = False) -> None:
    """params[key] a number ≥ low (> low when strict), and ≤ high where given."""
    value = params[key]
    if not is_number(value) or (value <= low if strict else value < low) or (high is not None and value > high):
        if high is not None:
            what = f"a number in [{low:g}, {high:g}]"
        else:
            what = "a positive number" if strict and low == 0 else f"a number {'>' if strict else '≥'} {low:g}"
        raise ValueError(f"{key} must be {what}, got {value!r}")


def one_of(params: dict[str, Any], key: str, options: Iterable[Any]) -> None:
    options = list(options)
    if params[key] not in options:
        raise ValueError(f"{key} must be one of {[o for o in options if o is not None]}, got {params[key]!r}")


def flag(params: dict[str, Any], key: str) -> None:
    if not isinstance(params[key], bool):
        raise ValueError(f"{key} must be true or false, got {params[key]!r}")


def checkpoint_index(params: dict[str, Any], key: str = "checkpoint") -> None:
    """An index into the proxy's checkpoint list (negative from its end); its range is checked when the feature is
    extracted, since the number of checkpoints is known only then."""
    if not is_integer(params[key]):
        raise ValueError(f"{key} must be an index into the proxy's checkpoints, got {params[key]!r}")
