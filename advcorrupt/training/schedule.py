"""The detector's learning-rate schedule: linear warm-up, then cosine annealing (:class:`WarmupCosine`)."""

from __future__ import annotations

import math
import warnings
from typing import Any

__all__ = ["WarmupCosine"]


class WarmupCosine:
    """Learning-rate factor: linear warm-up from 1/100 over ``warmup_steps``, then cosine to 1/100.

    A callable object (not a lambda) so ``LambdaLR`` saves and restores its fields in checkpoints.

    Args:
        total_steps: steps of the whole schedule.
        warmup_steps: warm-up steps (0: start at the full rate, a plain cosine annealing).
        floor: the final (and initial) factor.

    Example:
        >>> s = WarmupCosine(100, warmup_steps=10)
        >>> round(s(0), 3), s(10), round(s(100), 3)
        (0.01, 1.0, 0.01)
    """

    def __init__(self, total_steps: int, *, warmup_steps: int = 0, floor: float = 0.01) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.floor = float(floor)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.floor + (1.0 - self.floor) * step / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(max(step - self.warmup_steps, 0), span) / span
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _scheduler_step(scheduler: Any, *, skipped: bool) -> None:
    if skipped:  # the schedule follows global_step, skipped steps included
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            scheduler.step()
    else:
        scheduler.step()
