"""Helpers shared by the corruption kernels of every family (:mod:`.noise`, :mod:`.blur`, :mod:`.digital`).

Input checks, per-sample parameters as (B,) float32 tensors on the input's device, the float32
computing copy of half-precision inputs and the final clamp/cast, and the rule that decides
whether a kernel may read tensor values on the host (:func:`_host_reads_ok`, with the
accelerator emulation used by the sync-free tests).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from torch import Tensor

from ._registry import _check_layout, validate_images

_VALIDATED = threading.local()


@contextlib.contextmanager
def _switched_on(flag: threading.local) -> Iterator[None]:
    """Set the thread-local ``flag.on`` for the block, then restore what it was (nesting-safe)."""
    before = getattr(flag, "on", False)
    flag.on = True
    try:
        yield
    finally:
        flag.on = before


def _check_x(x: object, argname: str = "x") -> Tensor:
    """:func:`validate_images`; inside :func:`_values_validated` only the layout (no value pass)."""
    if getattr(_VALIDATED, "on", False):
        return _check_layout(x, argname)
    return validate_images(x, argname)


@contextlib.contextmanager
def _values_validated() -> Iterator[None]:
    """Within this block the kernels skip the pass over the values of ``x`` (type and shape stay).

    Internal: for a caller that has just validated a batch and hands the built-in kernels
    subsets of it (``ActionSpace.apply``), so the values are not checked once per subset.
    """
    with _switched_on(_VALIDATED):
        yield


def _param(p: Tensor | float, x: Tensor, argname: str) -> Tensor:
    """A (B,) float32 parameter on x's device (a Python number is broadcast to the batch)."""
    b = x.shape[0]
    if not isinstance(p, Tensor):
        return torch.full((b,), float(p), dtype=torch.float32, device=x.device)
    if p.ndim == 0:
        p = p.expand(b)
    if p.shape != (b,):
        raise ValueError(f"{argname} must have shape (B,) = ({b},) to match x; got {tuple(p.shape)}")
    return p.to(device=x.device, dtype=torch.float32)


def _work(x: Tensor) -> Tensor:
    """The computing copy of x: float32 for half types, else x itself."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _finish(out: Tensor, x: Tensor) -> Tensor:
    return out.clamp_(0.0, 1.0).to(x.dtype) if out is not x else out.clamp(0.0, 1.0)


_EMULATION = threading.local()


@contextlib.contextmanager
def _emulate_accelerator() -> Iterator[None]:
    """Within this block CPU tensors take the accelerator code paths (no reads of device values).

    Internal: lets CPU-only CI run the sync-free paths under a dispatch mode that fails on any
    host read (``aten._local_scalar_dense``, ``nonzero``, boolean indexing).
    """
    with _switched_on(_EMULATION):
        yield


def _host_reads_ok(device: torch.device) -> bool:
    """Whether reading a tensor's values on the host is free: CPU, unless emulating an accelerator."""
    return device.type == "cpu" and not getattr(_EMULATION, "on", False)


def _bmax(p: Tensor, static: float | None) -> float:
    """Upper bound of ``p`` that sizes a padded kernel stack.

    On CPU the exact maximum costs nothing; on an accelerator reading it would force a
    host-device sync, so a ``static`` bound (the registry's level table) is used when given.
    The result does not depend on the bound (larger stacks are zero-padded), only the speed.
    """
    if static is not None and not _host_reads_ok(p.device):
        return float(static)
    return float(p.max()) if p.numel() else 0.0

