"""Progress reporting that reads well both on a terminal and in a piped log.

On a terminal (stderr is a TTY) progress is a tqdm bar. Otherwise (``python train.py > log 2>&1``,
CI, ``nohup``) a bar would write thousands of carriage-return frames; :class:`LineProgress` writes
one plain line per finished phase instead (``desc: done/total unit in T s``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

__all__ = ["LineProgress", "is_terminal", "progress_bar", "progress_iter"]

T = TypeVar("T")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``, where tqdm draws) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # closed or detached stream
        return False


class LineProgress:
    """The subset of tqdm's interface the library uses, printing one line per phase.

    A phase ends when the description changes (:meth:`set_description`) or at :meth:`close`;
    phases with no progress print nothing.

    Args:
        total: expected total count over all phases (shown as ``done/total``).
        desc: description of the first phase.
        unit: unit of the count (``"img"``, ``"step"``).
        stream: where lines go (default ``sys.stderr``).
    """

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", stream: TextIO | None = None) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream
        self.n = 0
        self._phase_start_n = 0
        self._phase_t0 = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += int(n)

    def set_description(self, desc: str, refresh: bool = True) -> None:  # noqa: ARG002 (tqdm signature)
        self._emit()
        self.desc = desc

    def close(self) -> None:
        if not self._closed:
            self._emit()
            self._closed = True

    def _emit(self) -> None:
        done = self.n - self._phase_start_n
        if done <= 0:
            return
        total = f"/{self.total}" if self.total is not None else ""
        elapsed = time.perf_counter() - self._phase_t0
        print(f"{self.desc}: {self.n}{total} {self.unit} ({elapsed:.1f} s)", file=self.stream or sys.stderr, flush=True)
        self._phase_start_n = self.n
        self._phase_t0 = time.perf_counter()


def progress_bar(*, total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> Any:
    """A tqdm bar on a terminal, a :class:`LineProgress` otherwise, ``None`` when not ``enabled``."""
    if not enabled:
        return None
    if not is_terminal():
        return LineProgress(total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def progress_iter(iterable: Iterable[T], *, desc: str, enabled: bool = True) -> Iterator[T]:
    """Iterate with a tqdm bar on a terminal; plain iteration when piped or not ``enabled``.

    Callers print their own one-line summary per epoch/phase; a piped log gets only those lines.
    """
    if not enabled or not is_terminal():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)
