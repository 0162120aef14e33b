"""Non-finite steps: the detector's optimizer step under a finite flag, and the count of skipped steps.

The trainer checks each step's loss and gradient norm. On the host (CPU, or wherever a read is
cheap) it reads one flag and steps or skips; on an accelerator the flag never leaves the device:
:func:`step_unless_non_finite` applies or cancels the update there, and :class:`SkipCounter` keeps
the counts on the device until someone reads them (one sync per read, not per step).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["SkipCounter", "finite_flag", "step_unless_non_finite"]


def finite_flag(loss: Tensor, grads: list[Tensor], gnorm: Tensor | None, *, check_grads: bool = True) -> Tensor:
    """``isfinite(loss) & isfinite(gradient norm)`` as a 0-dim bool tensor on ``loss``'s device (no sync).

    ``gnorm``: the norm if already known (clipping computed it); ``check_grads=False`` checks the
    loss only (a ``GradScaler`` deals with non-finite gradients itself).
    """
    ok = torch.isfinite(loss.detach())
    if not check_grads:
        return ok
    if gnorm is None:
        gnorm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=loss.device)
    return ok & torch.isfinite(gnorm.to(loss.device))


def step_unless_non_finite(
    optimizer: torch.optim.Optimizer, grads: list[Tensor], ok: Tensor,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """One optimizer step that changes no weight where the device-side flag ``ok`` is false (no sync).

    A scaler steps and updates as usual (it skips non-finite gradients itself). A fused optimizer
    (``fused=True``) gets ``~ok`` as ``found_inf``, as a ``GradScaler`` hands it over, and skips
    the whole update on the device; any other optimizer steps on gradients zeroed where ``ok`` is
    false (no NaN reaches the weights; a momentum optimizer still moves by its momentum).
    """
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    elif getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer.found_inf = (~ok).float()  # type: ignore[attr-defined]
        optimizer.grad_scale = None  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf, optimizer.grad_scale  # type: ignore[attr-defined]
    else:
        bad = ~ok
        for g in grads:
            g.masked_fill_(bad, 0.0)
        optimizer.step()


class SkipCounter:
    """Steps skipped for a non-finite loss or gradient: in total and in a row since the last finite one.

    :meth:`count_host` counts a step whose flag was read on the host (and warns at once);
    :meth:`count_device` counts one whose flag stayed on the device, into three device counters
    (skips, trailing run of skips, saw a finite step) folded into the host counts by the next read
    of :attr:`total` or :attr:`run` (one sync; it warns if the counters held skips).
    """

    def __init__(self) -> None:
        self._device: Tensor | None = None
        self._total = 0
        self._run = 0

    def count_host(self, ok: bool, step: int) -> None:
        """Count a step read on the host; a skipped one warns (attributed to the trainer's caller)."""
        if ok:
            self.run = 0
            return
        self.total += 1
        self.run += 1
        warnings.warn(
            f"non-finite loss or gradient at step {step}: detector and policy updates "
            f"skipped ({self.run} consecutive, {self.total} in total)",
            RuntimeWarning,
            stacklevel=4,
        )

    def count_device(self, skipped: Tensor) -> None:
        """Count a step on the device, ``skipped`` a 0-dim float (1.0: skipped), with no sync."""
        st = self._device if self._device is not None else torch.zeros(3, device=skipped.device)
        run = (st[1] + skipped) * skipped
        self._device = torch.stack([st[0] + skipped, run, torch.maximum(st[2], 1.0 - skipped)])

    @property
    def pending(self) -> bool:
        """Whether device counters wait to be read."""
        return self._device is not None

    def read(self) -> None:
        """Fold the device counters into the host counts: one host-device sync (warns on skips)."""
        if self._device is None:
            return
        skips, run, saw_ok = (int(v) for v in self._device.tolist())
        self._device = None
        self._total += skips
        self._run = run if saw_ok else self._run + run
        if skips:
            warnings.warn(
                f"{skips} step(s) with a non-finite loss or gradient since the last check: their detector "
                f"and policy updates were skipped ({self._run} consecutive, {self._total} in total)",
                RuntimeWarning,
                stacklevel=4,
            )

    @property
    def total(self) -> int:
        """Skipped steps in total (reads the device counters first)."""
        self.read()
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self.read()
        self._total = int(value)

    @property
    def run(self) -> int:
        """Skipped steps since the last finite one (reads the device counters first)."""
        self.read()
        return self._run

    @run.setter
    def run(self, value: int) -> None:
        self.read()
        self._run = int(value)
