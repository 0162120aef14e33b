"""Batched corruption kernels with per-sample parameters (ImageNet-C definitions), in one namespace.

Every kernel takes images ``x`` of shape (B, C, H, W), float in [0, 1], C in {1, 3}, and one
parameter tensor of shape (B,) per parameter, so each sample of a batch can have its own
severity. Kernels run with torch ops on ``x``'s device, take randomness only from an optional
``torch.Generator`` and return a tensor of ``x``'s shape and dtype, clamped to [0, 1]. Half
precision inputs are computed in float32 and cast back.

The definitions follow the reference implementation of ImageNet-C, the ``imagecorruptions``
package of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations" (ICLR 2019), Sec. 3 and its appendix; ``docs/corruptions.md``
lists the formulas and every deliberate deviation.

The kernels live by family, like kornia's filters: :mod:`advcorrupt.corruptions.noise`,
:mod:`advcorrupt.corruptions.blur` and :mod:`advcorrupt.corruptions.digital`, on the shared
helpers of ``advcorrupt.corruptions._common``. This module re-exports the very same objects, so
``from advcorrupt.corruptions.functional import gaussian_noise`` keeps working (as does the
albumentations-style ``from advcorrupt.corruptions import functional as F``).

Example:
    >>> import torch
    >>> from advcorrupt.corruptions import functional, noise
    >>> functional.gaussian_noise is noise.gaussian_noise
    True
"""

from __future__ import annotations

# The public kernels (``__all__``), and the private helpers that other modules, tests and benchmarks
# import from here (hence the noqa).
from ._common import _bmax, _emulate_accelerator, _host_reads_ok  # noqa: F401
from .blur import (  # noqa: F401
    _correlate_per_sample,
    _motion_scatter,
    _motion_weights,
    blur_mix,
    defocus_blur,
    defocus_kernel,
    gaussian_blur,
    gaussian_blur_kernel,
    motion_blur,
    motion_blur_kernel,
)
from .digital import (  # noqa: F401
    _pixelate_plan,
    _pixelate_planned,
    brightness,
    contrast,
    jpeg_compression,
    pixelate,
)
from .noise import gaussian_noise, impulse_noise, noise_mix, shot_noise

__all__ = [
    "blur_mix",
    "brightness",
    "contrast",
    "defocus_blur",
    "defocus_kernel",
    "gaussian_blur",
    "gaussian_blur_kernel",
    "gaussian_noise",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "motion_blur_kernel",
    "noise_mix",
    "pixelate",
    "shot_noise",
]
