"""Validation of the constructor arguments every ISTD model shares."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["check_positive_int", "check_widths"]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` >= 1 (not a bool), else raise ``ValueError``.

    Example:
        >>> check_positive_int("in_channels", 3)
        3
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r} ({type(value).__name__})")
    return value


def check_widths(name: str, values: object, length: int) -> list[int]:
    """Return ``values`` as a list if it is a sequence of ``length`` integers >= 1.

    Example:
        >>> check_widths("channels", (8, 16), 2)
        [8, 16]
    """
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != length:
        raise ValueError(f"{name} must be a sequence of {length} integers >= 1; got {values!r}")
    return [check_positive_int(f"{name}[{i}]", v) for i, v in enumerate(values)]
