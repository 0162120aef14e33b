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
"""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "capture_rng_state",
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
    """
    path = Path(path)
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None; got {keep_last}")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(state)
    payload.setdefault("format_version", FORMAT_VERSION)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    if keep_last is not None:
        for old in list_checkpoints(path.parent)[:-keep_last]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


_CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """``ckpt_<step>.pt`` files in ``folder``, oldest first (by step number)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


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
