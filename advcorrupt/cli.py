"""The ``advcorrupt`` command line.

Each subcommand lives in its own module that provides two functions:

- ``add_parser(subparsers) -> argparse.ArgumentParser``: add the subcommand and its options;
- ``run(args: argparse.Namespace) -> int | None``: execute it (the return value is the exit code).

``COMMAND_MODULES`` lists those modules in help order; a module that exists but does not (yet)
provide ``add_parser`` is skipped, so a new subcommand is added by writing those two functions
in its module (``advcorrupt._cli_train`` for ``train``, ``advcorrupt._cli_bench`` for ``bench``,
``advcorrupt._cli_corrupt`` for ``corrupt-dataset``).

Example:
    $ advcorrupt corruptions
    $ advcorrupt corruptions --preview grid.png --image frame.png --seed 1
    $ advcorrupt corrupt-dataset data/NUAA-SIRST data/NUAA-SIRST-C --severities 1,3 --seed 0
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Sequence

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "advcorrupt.corruptions.preview",  # corruptions
    "advcorrupt._cli_train",  # train
    "advcorrupt._cli_bench",  # bench
    "advcorrupt._cli_corrupt",  # corrupt-dataset
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="advcorrupt",
        description="Adversarial corruption training (BALISTD) for PyTorch segmentation models.",
    )
    parser.add_argument("--version", action="version", version=f"advcorrupt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        add_parser = getattr(module, "add_parser", None)
        if add_parser is None or not hasattr(module, "run"):
            continue
        sub = add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``advcorrupt`` (and ``python -m advcorrupt``).

    Args:
        argv: arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit code (0 on success).
    """
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    code = run(args)
    return 0 if code is None else int(code)
