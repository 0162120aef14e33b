"""The ``advcorrupt`` command line: the top-level parser and the dispatch to one module per subcommand.

Each subcommand module (``corruptions``, ``train``, ``bench``, ``corrupt_dataset``) provides

- ``add_parser(subparsers) -> argparse.ArgumentParser``: add the subcommand and its options;
- ``run(args: argparse.Namespace) -> int``: execute it (the return value is the exit code).

Subcommand modules share argument helpers through :mod:`advcorrupt.cli._args` (and the on-disk
corrupted datasets through :mod:`advcorrupt.cli._corrupted_root`); none imports another.

Example:
    $ advcorrupt --version
    $ advcorrupt corruptions
    $ advcorrupt corruptions --preview grid.png --image frame.png --seed 1
    $ advcorrupt corrupt-dataset data/NUAA-SIRST data/NUAA-SIRST-C --severities 1,3 --seed 0
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import bench, corrupt_dataset, corruptions, train

__all__ = ["COMMANDS", "build_parser", "main"]

#: The subcommand modules, in help order.
COMMANDS = (corruptions, train, bench, corrupt_dataset)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand of :data:`COMMANDS` registered.

    Example:
        >>> build_parser().parse_args(["train", "--epochs", "2"]).epochs
        2
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="advcorrupt",
        description="Adversarial corruption training (BALISTD) for PyTorch segmentation models.",
    )
    parser.add_argument("--version", action="version", version=f"advcorrupt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``advcorrupt`` (and ``python -m advcorrupt``).

    Args:
        argv: arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit code (0 on success; 2 and the help when no subcommand is given).

    Example:
        >>> main(["corruptions"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    code = run(args)
    return 0 if code is None else int(code)
