"""Checks on :class:`~advcorrupt.AdversarialCorruptionTrainer`'s constructor arguments.

Each raises before the trainer holds anything, naming the argument, what it expects and what it got.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["check_trainer_args"]


def check_trainer_args(
    model: object,
    optimizer: object,
    *,
    lam: object,
    loss_fn: object,
    preprocess: object,
    generator: object,
    scaler: object,
    max_grad_norm: object,
    in_channels: object,
) -> list[Tensor]:
    """Check the trainer's arguments; return the optimizer's parameters (for the gradient checks)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
    opt_params = _optimizer_holds_model(model, optimizer)
    if not _real(lam) or lam < 0:  # type: ignore[operator]
        raise ValueError(f"lam must be a finite number >= 0; got {lam!r}")
    for name, value in (("loss_fn", loss_fn), ("preprocess", preprocess)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None; got {type(value).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator).__name__}")
    if scaler is not None and not all(hasattr(scaler, a) for a in ("scale", "step", "update", "unscale_")):
        raise TypeError(f"scaler must be a torch.amp.GradScaler or None; got {type(scaler).__name__}")
    if max_grad_norm is not None and (not _real(max_grad_norm) or max_grad_norm <= 0):  # type: ignore[operator]
        raise ValueError(f"max_grad_norm must be a finite number > 0 or None; got {max_grad_norm!r}")
    if in_channels is not None and (isinstance(in_channels, bool) or not isinstance(in_channels, int)
                                    or in_channels < 1):
        raise ValueError(f"in_channels must be a positive int or None (inferred from the first batch); "
                         f"got {in_channels!r}")
    return opt_params


def _optimizer_holds_model(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The optimizer's parameters; at least one must be the model's (not an optimizer built for another)."""
    model_params = {id(p) for p in model.parameters()}
    if not model_params:
        raise ValueError("model must have parameters to train; got a model with none")
    opt_params = [p for g in optimizer.param_groups for p in g["params"]]
    if not any(id(p) in model_params for p in opt_params):
        raise ValueError(
            f"optimizer must hold the model's parameters; it holds {len(opt_params)} parameter(s), "
            "none of them the model's (was it built for another model?)"
        )
    return opt_params


def _real(value: Any) -> bool:
    """A finite real number that is not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
