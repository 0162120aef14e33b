"""Checkpoints that survive crashes and never run code on load.

- :func:`save_checkpoint` writes atomically: a temporary file in the same folder, flushed and
  fsync'd, then ``os.replace``'d over the target and the folder fsync'd. A crash during a save
  leaves the previous checkpoint intact; a reader never sees half a file.
- :func:`load_checkpoint` reads with ``torch.load(weights_only=True)``: only tensors and plain
  containers (dict, list, tuple, str, int, float, bool, None) unpickle. The allow-list of extra
  globals is empty on purpose: everything the training state needs (including NumPy and Python RNG
  states) is stored as tensors and plain containers by :func:`capture_rng_state`. A crafted pickle
  that would import a callable is refused with :class:`CheckpointError`.
- Truncated or corrupt files raise :class:`CheckpointError` saying so; nothing is applied.
- A write that fails (disk full, read-only folder) raises :class:`CheckpointWriteError` naming
  the file and the cause; the previous checkpoints are left as they were (nothing is pruned).
- :func:`latest_valid_checkpoint` picks the newest checkpoint that loads, for resuming: a
  damaged newer one is renamed ``*.damaged`` with a :class:`CheckpointWarning`.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "CheckpointWarning",
    "CheckpointWriteError",
    "capture_rng_state",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT_VERSION = 1
# Globals torch.load may import beyond its weights-only defaults. Empty: see the module docstring.
SAFE_GLOBALS: list[Any] = []


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, unsafe, or for another model/configuration."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder, ...); the previous
    checkpoints are intact. ``errno`` and ``filename`` are those of the failed write."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped (and renamed ``*.damaged``) when resuming."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str], *, keep_last: int | None = None) -> Path:
    """Atomically write ``state`` to ``path`` (temporary file, fsync, rename).

    Args:
        state: the checkpoint dict (tensors and plain containers only, so it loads safely).
        path: target file; its folder is created if needed.
        keep_last: if given, delete older ``ckpt_*.pt`` files in the same folder so that only the
            newest ``keep_last`` remain (by the step number in their names).

    Returns:
        The path written.

    Raises:
        CheckpointWriteError: the folder or file could not be written (disk full, read-only,
            quota): the message names the file and the cause; the previous checkpoints are
            untouched (nothing is pruned) and no temporary file is left behind.
    """
    path = Path(path)
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None; got {keep_last}")
    payload = dict(state)
    payload.setdefault("format_version", FORMAT_VERSION)
    # Serialise in memory first: torch.save's zip writer turns a failed write into an opaque
    # RuntimeError ("unexpected pos"), while a plain write raises OSError with its errno.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _write_error(e, path) from e
        raise
    _fsync_dir(path.parent)
    if keep_last is not None:
        for old in list_checkpoints(path.parent)[:-keep_last]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def _write_error(e: OSError, path: Path) -> CheckpointWriteError:
    code = e.errno or errno.EIO
    previous = [p.name for p in list_checkpoints(path.parent) if p != path][-1:]
    kept = f"the previous checkpoint {previous[0]} is intact" if previous else "no earlier checkpoint exists"
    cause = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
             errno.EACCES: "the folder is not writable", errno.EROFS: "the file system is read-only",
             errno.EPERM: "the folder is not writable"}.get(code, "the write failed")
    return CheckpointWriteError(
        code,
        f"could not write checkpoint {path.name} in {path.parent}: {cause} ({type(e).__name__}: "
        f"{e.strerror or e}); {kept} and nothing was deleted. Free "
        f"space or fix the permissions, then rerun with --resume (or use another --out-dir)",
        str(path),
    )


_CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """``ckpt_<step>.pt`` files in ``folder``, oldest first (by step number)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_valid_checkpoint(
    folder: str | os.PathLike[str], *, quarantine: bool = True, map_location: str | torch.device | None = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``folder`` that loads, skipping damaged newer ones.

    Each newer checkpoint that fails to load (truncated, corrupt, unsafe: a
    :class:`CheckpointError`) is reported with a :class:`CheckpointWarning` and, with
    ``quarantine``, renamed ``<name>.damaged`` so it is neither counted by ``keep_last`` nor tried
    again (one process of a group should quarantine; the others pass ``quarantine=False``). A file
    that vanishes while being read (another process quarantined it) is skipped silently.

    Args:
        folder: the run's output folder.
        quarantine: rename damaged checkpoints to ``*.damaged``.
        map_location: passed to :func:`load_checkpoint`.

    Returns:
        ``(path, checkpoint dict)``, or ``None`` when ``folder`` holds no checkpoint at all.

    Raises:
        CheckpointError: checkpoints exist but none loads (each one's problem is listed); nothing
            is started from scratch behind the user's back.

    Example:
        >>> import tempfile
        >>> latest_valid_checkpoint(tempfile.mkdtemp()) is None
        True
    """
    candidates = list_checkpoints(folder)
    problems: list[str] = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path, map_location=map_location)
        except FileNotFoundError:
            continue
        except CheckpointError as e:
            problems.append(str(e))
            where = path
            if quarantine:
                where = path.with_name(path.name + ".damaged")
                try:
                    os.replace(path, where)
                except OSError:
                    where = path
            warnings.warn(
                f"skipping a damaged checkpoint ({e}); kept as {where.name}; trying the previous one",
                CheckpointWarning, stacklevel=2,
            )
    if problems:
        raise CheckpointError(
            f"none of the {len(problems)} checkpoint(s) in {folder} can be loaded: " + "; ".join(problems)
            + ". Delete them (or use another --out-dir) to start afresh"
        )
    return None


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); raise :class:`CheckpointError` if unusable.

    Args:
        path: the file.
        map_location: where tensors land (default CPU; callers move them).

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated/corrupt file, a pickle that asks for objects beyond tensors and
            plain containers (refused, never executed), or not an advcorrupt checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the file is truncated")
    if data[:2] != b"PK" and data[:1] != b"\x80":  # neither a torch.save zip nor a pickle
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({len(data)} bytes): it starts with neither a zip "
            f"header (torch.save) nor a pickle header"
        )
    if data[:2] == b"PK":
        # torch.save writes a zip whose entries carry CRC-32s: verify them all, so flipped or
        # zeroed bytes inside tensor data are caught, not silently loaded as wrong weights.
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt ({len(data)} bytes): {type(e).__name__}: {e}"
            ) from None
        if bad is not None:
            raise CheckpointError(
                f"checkpoint {path} is truncated or corrupt: entry {bad!r} fails its CRC-32 check"
            )
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        operand = re.search(r"Unsupported operand \d+", str(e))
        what = (
            f"the global {found.group(1)}" if found
            else f"content the safe unpickler rejects ({operand.group(0)})" if operand
            else "an object"
        )
        raise CheckpointError(
            f"refused to load {path}: it asks to unpickle {what}, which is neither a tensor nor a "
            f"plain container and could run code; advcorrupt loads with weights_only=True and does "
            f"not allow it (only load checkpoints written by advcorrupt)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({len(data)} bytes): {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(
            f"{path} is not an advcorrupt checkpoint: expected a dict with 'format_version'; "
            f"got {type(state).__name__}"
        )
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format_version']}; this version reads {FORMAT_VERSION}"
        )
    return state


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and every CUDA device), NumPy and Python, as tensors/plain types."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
