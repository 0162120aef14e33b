"""Which code trained a run: the git commit of the advcorrupt sources, and whether the tree was dirty.

Every run folder's ``config.json`` records it beside the configuration fields, as
``"git": {"commit": "<40 hex digits>", "dirty": false}``, so that "this run came from a frozen
checkout of X" can be checked from the files alone. It is a record of the run, not part of its
recipe: :class:`~advcorrupt.training.TrainConfig` does not hold it, and
:meth:`~advcorrupt.training.TrainConfig.from_dict` drops it when a ``config.json`` is read back.

The answer is asked of ``git`` in the folder of the package's sources (``git rev-parse HEAD``;
``git status --porcelain`` over the whole work tree, untracked files included, without taking
git's index lock). Where it cannot be known (an installed wheel, no git, a slow git, a folder
that git does not track), both fields are ``None``: recording the run never fails because of it.
A resumed run rewrites ``config.json``, so the record names the code of the latest (re)start.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

__all__ = ["source_revision"]

# advcorrupt/, the folder of the package's sources (this file is advcorrupt/training/provenance.py).
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_TIMEOUT_S = 10.0
# Variables that would point git at another repository than the folder's own.
_GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR")


def source_revision(folder: str | os.PathLike[str] | None = None) -> dict[str, str | bool | None]:
    """The git commit a package folder was checked out at, and whether its work tree was dirty.

    Args:
        folder: a package's source folder (default: advcorrupt's own). Its files must be tracked
            by the repository around it: a wheel installed in a virtual environment that happens
            to sit inside another repository says nothing about that repository's commit.

    Returns:
        ``{"commit": sha or None, "dirty": True / False or None}``; ``None`` where git cannot tell
        (not a checkout, git missing or slower than 10 s, files not tracked). Never raises.

    Example:
        >>> revision = source_revision()
        >>> sorted(revision)
        ['commit', 'dirty']
        >>> revision["commit"] is None or len(revision["commit"]) == 40
        True
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as outside_any_checkout:
        ...     source_revision(outside_any_checkout)
        {'commit': None, 'dirty': None}
    """
    where = Path(folder) if folder is not None else _PACKAGE_DIR
    unknown: dict[str, str | bool | None] = {"commit": None, "dirty": None}
    commit = _git(where, "rev-parse", "HEAD")
    if commit is None or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        return unknown
    if _git(where, "ls-files", "--error-unmatch", "--", ".") is None:  # the folder holds no tracked file
        return unknown
    status = _git(where, "status", "--porcelain")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _git(folder: Path, *args: str) -> str | None:
    """``git <args>`` run in ``folder``: its stripped output, or ``None`` if git is missing, fails or hangs."""
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # `git status` must not write the index (other processes commit)
    try:
        done = subprocess.run(
            ["git", *args], cwd=folder, env=env, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
