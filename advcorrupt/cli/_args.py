"""Argument helpers shared by the ``advcorrupt`` subcommands: list parsing, common flags, messages."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_corruptions_argument", "csv_list", "error_message"]


def csv_list(kind: type) -> Callable[[str], tuple[object, ...]]:
    """An ``argparse`` type that parses ``"a,b,c"`` into a tuple of ``kind`` (empty items dropped).

    Args:
        kind: the type of each item, e.g. ``int`` or ``str``.

    Returns:
        The parser; it raises ``argparse.ArgumentTypeError`` naming the expected type and the text.

    Example:
        >>> csv_list(int)("1, 3,")
        (1, 3)
    """

    def parse(text: str) -> tuple[object, ...]:
        try:
            return tuple(kind(p.strip()) for p in text.split(",") if p.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}; got {text!r}") from None

    return parse


def add_corruptions_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--corruptions NAME,NAME,...`` (default: all registered corruptions) to ``parser``.

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_corruptions_argument(p)
        >>> p.parse_args(["--corruptions", "gaussian_noise,brightness"]).corruptions
        ('gaussian_noise', 'brightness')
    """
    parser.add_argument("--corruptions", type=csv_list(str), default=None, help="comma-separated names (default: all)")


def error_message(e: BaseException) -> str:
    """The text of an exception for an ``advcorrupt <command>: error: ...`` line.

    ``str(KeyError("x"))`` is ``"'x'"``; this gives the message itself.

    Example:
        >>> error_message(KeyError("unknown corruption 'x'"))
        "unknown corruption 'x'"
    """
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
