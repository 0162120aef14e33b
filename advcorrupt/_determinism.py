"""Torch switches for reproducible runs (``advcorrupt train --deterministic``).

On CPU a run is already reproducible bit for bit (same seed, same number of intra-op threads; see
``docs/reliability.md``). On CUDA, some kernels use atomics or pick algorithms by timing, so two
runs drift apart; :func:`set_deterministic` sets:

- ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (if unset): cuBLAS reductions in a fixed order. It only
  takes effect for a cuBLAS handle created afterwards, so call it before the first CUDA matmul;
- ``torch.use_deterministic_algorithms(True, warn_only=True)``: deterministic kernels wherever
  torch has one. ``warn_only``: ops without one (e.g. the CUDA backward of adaptive pooling and
  bilinear upsampling, used by DNANet and ACM) warn once instead of raising, and stay
  nondeterministic;
- ``torch.backends.cudnn.deterministic = True`` and ``torch.backends.cudnn.benchmark = False``:
  fixed convolution algorithms instead of the fastest one found by timing.

The cost is speed on CUDA (slower deterministic kernels, no cuDNN autotuning); see
``docs/reliability.md`` for how to measure it on your GPU.
"""

from __future__ import annotations

import os

import torch

__all__ = ["set_deterministic"]

CUBLAS_WORKSPACE = ":4096:8"


def set_deterministic(enabled: bool = True) -> None:
    """Turn torch's reproducibility switches on (or back to torch's defaults).

    Args:
        enabled: ``True`` sets the switches described in the module docstring; ``False`` restores
            torch's defaults (``CUBLAS_WORKSPACE_CONFIG`` is left as it is).

    Example:
        >>> set_deterministic(True)
        >>> torch.are_deterministic_algorithms_enabled()
        True
        >>> set_deterministic(False)
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool; got {type(enabled).__name__}")
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False
