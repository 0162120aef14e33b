"""Value checks on input tensors that never stall an accelerator's stream.

A float image in 0-255 (a forgotten ``/ 255``) or one holding NaN/inf passes every shape and
dtype check and then comes out silently wrong (clipped, or NaN). :func:`check_values` catches it:

- **CPU**: one pass over the tensor (``torch.aminmax``); a bad value raises ``ValueError`` at
  once, naming the argument, the expected range and what was found.
- **CUDA**: ``torch._assert_async``: a device-side assert queued on the stream, so the host
  never waits. A bad value aborts the process at the next synchronisation point with
  ``RuntimeError: CUDA error: device-side assert triggered`` (the CUDA context is then unusable;
  ``advcorrupt train --resume`` continues from the last checkpoint). Run the same input on CPU
  to get the readable message.
- **Other devices** (MPS, XLA, meta): not checked (no asynchronous assert there).

:func:`set_value_checks` turns the value checks off (shape and dtype checks stay), e.g. for a
benchmark that measures kernels alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_values", "set_value_checks", "value_checks_enabled"]

_ENABLED = True


def set_value_checks(enabled: bool) -> None:
    """Turn the value checks of :func:`check_values` on or off (process-wide; default on)."""
    global _ENABLED
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool; got {type(enabled).__name__}")
    _ENABLED = enabled


def value_checks_enabled() -> bool:
    """Whether :func:`check_values` checks values (see :func:`set_value_checks`)."""
    return _ENABLED


def check_values(x: Tensor, argname: str, *, low: float = -math.inf, high: float = math.inf, hint: str = "") -> None:
    """Check that every element of the float tensor ``x`` is finite and within ``[low, high]``.

    Args:
        x: a floating-point tensor (the caller has checked type, dtype and shape).
        argname: the argument's name, for the message.
        low, high: the allowed closed range (infinite bounds: only finiteness is checked).
        hint: appended to the CPU error message (e.g. how to fix a 0-255 image).

    Raises:
        ValueError: on CPU, a NaN, an infinity or a value outside ``[low, high]``.
    """
    if not _ENABLED or x.numel() == 0:
        return
    kind = x.device.type
    if kind == "cpu":
        with torch.no_grad():
            lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        if lo >= low and hi <= high and math.isfinite(lo) and math.isfinite(hi):
            return
        raise ValueError(_describe(x, argname, low, high, lo, hi, hint))
    if kind == "cuda":
        with torch.no_grad():
            xd = x.detach()
            ok = torch.isfinite(xd) if (math.isinf(low) and math.isinf(high)) else (xd >= low) & (xd <= high)
            torch._assert_async(ok.all(), f"{argname} holds NaN/inf or values outside [{low}, {high}]")


def _describe(x: Tensor, argname: str, low: float, high: float, lo: float, hi: float, hint: str) -> str:
    xd = x.detach()
    n_nan, n_inf = int(torch.isnan(xd).sum()), int(torch.isinf(xd).sum())
    finite = xd[torch.isfinite(xd)]
    # repr, not a short format: 1 + 1 ulp must not print as 1 in a message about leaving [0, 1]
    rng = f"[{float(finite.min())!r}, {float(finite.max())!r}]" if finite.numel() else "none"
    wanted = "finite values" if math.isinf(low) and math.isinf(high) else f"finite values in [{low:g}, {high:g}]"
    found = []
    if n_nan:
        found.append(f"{n_nan} NaN")
    if n_inf:
        found.append(f"{n_inf} inf")
    found.append(f"finite range {rng}")
    msg = f"{argname} must hold {wanted}; got {', '.join(found)} (shape {tuple(x.shape)}, {x.dtype})"
    return f"{msg}. {hint}" if hint else msg
